//! A Kafka-protocol broker that speaks only TLS, as managed Kafka does: Tansu behind stunnel,
//! with certificates made in the test, optionally requiring a client certificate (mutual TLS,
//! as Aiven does) and optionally SASL/SCRAM (as MSK, Redpanda Cloud and Confluent Platform
//! do). Tansu 0.6 has no TLS listener of its own — its `--cert` and `--key` flags are refused
//! together, and the acceptor they would make is never used — so TLS is terminated by stunnel,
//! as some on-premise deployments put a TLS proxy in front of their brokers. Tansu advertises
//! stunnel's address, so every connection a client makes goes through TLS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::{await_port, free_tcp_port, python, Tansu};

/// Certificates and keys made for one test, as PEM files in `dir`.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    /// The client's key, encrypted with [`Pki::CLIENT_KEY_PASSWORD`].
    pub client_key: PathBuf,
    /// A CA that signed nothing the broker shows: what a wrong `ca_file` looks like.
    pub other_ca: PathBuf,
}

impl Pki {
    pub const CLIENT_KEY_PASSWORD: &'static str = "client-key-passphrase";

    pub fn generate(dir: &Path) -> Pki {
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let (ca, ca_key) = authority("woostream test CA");
        let (other, _) = authority("someone else's CA");

        let server_key = KeyPair::generate().unwrap();
        let mut server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        server
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        server.distinguished_name.push(DnType::CommonName, "broker");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = server.signed_by(&server_key, &ca, &ca_key).unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client
            .distinguished_name
            .push(DnType::CommonName, "woostream");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = client.signed_by(&client_key, &ca, &ca_key).unwrap();

        let plain_client_key = write("client-plain.key", client_key.serialize_pem());
        let client_key_path = dir.join("client.key");
        // Encrypted as a platform team's key usually is, so that key_password is exercised.
        let status = Command::new("openssl")
            .args(["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in"])
            .arg(&plain_client_key)
            .arg("-out")
            .arg(&client_key_path)
            .args(["-passout", &format!("pass:{}", Self::CLIENT_KEY_PASSWORD)])
            .status()
            .expect("running openssl (make test installs it)");
        assert!(status.success(), "encrypting the client key");
        std::fs::remove_file(plain_client_key).unwrap();

        Pki {
            ca: write("ca.pem", ca.pem()),
            server_cert: write("server.pem", server.pem()),
            server_key: write("server.key", server_key.serialize_pem()),
            client_cert: write("client.pem", client.pem()),
            client_key: client_key_path,
            other_ca: write("other-ca.pem", other.pem()),
        }
    }
}

fn authority(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params.self_signed(&key).unwrap(), key)
}

/// How the broker makes clients prove who they are, beyond TLS.
pub enum ClientAuth {
    /// A client certificate signed by the test CA (`security.protocol` SSL).
    Certificate,
    /// SCRAM-SHA-512 with this user and password (`security.protocol` SASL_SSL).
    Scram { user: String, password: String },
}

pub struct SecureBroker {
    /// stunnel's TLS address: the only one Tansu advertises.
    pub bootstrap: String,
    pub pki: Pki,
    pub dir: tempfile::TempDir,
    _tansu: Tansu,
    stunnel: Child,
}

impl SecureBroker {
    pub fn start(auth: ClientAuth) -> SecureBroker {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path());
        let (tls_port, tansu_port) = (free_tcp_port(), free_tcp_port());
        let advertised = format!("tcp://127.0.0.1:{tls_port}");
        let tansu = match &auth {
            ClientAuth::Certificate => Tansu::launch(
                tansu_port,
                "memory://tansu/",
                Some(&advertised),
                &[],
                dir.path(),
            ),
            ClientAuth::Scram { user, password } => {
                // Tansu keeps SCRAM credentials only in durable storage, and takes them only
                // through the admin API of a broker that does not yet require them: store them,
                // then restart the broker requiring authentication.
                std::fs::create_dir(dir.path().join("db")).unwrap();
                let storage = "sqlite://db/tansu.db";
                let open = Tansu::launch(tansu_port, storage, None, &[], dir.path());
                store_scram_credentials(&open.bootstrap, user, password);
                drop(open);
                Tansu::launch(
                    tansu_port,
                    storage,
                    Some(&advertised),
                    &["--authentication"],
                    dir.path(),
                )
            }
        };
        let client_certificates = match auth {
            ClientAuth::Certificate => format!(
                "CAfile = {}\nverifyChain = yes\nrequireCert = yes\n",
                pki.ca.display()
            ),
            ClientAuth::Scram { .. } => String::new(),
        };
        let conf = dir.path().join("stunnel.conf");
        std::fs::write(
            &conf,
            format!(
                "foreground = yes\npid =\ndebug = warning\n[kafka]\naccept = 127.0.0.1:{tls_port}\nconnect = 127.0.0.1:{tansu_port}\ncert = {}\nkey = {}\n{client_certificates}",
                pki.server_cert.display(),
                pki.server_key.display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("stunnel.log")).unwrap();
        let stunnel = Command::new("stunnel")
            .arg(&conf)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting stunnel (make test installs it)");
        let bootstrap = format!("127.0.0.1:{tls_port}");
        await_port(&bootstrap, "stunnel");
        SecureBroker {
            bootstrap,
            pki,
            dir,
            _tansu: tansu,
            stunnel,
        }
    }

    /// The `[kafka]` section a client of this broker needs, with `security` lines added to
    /// `[kafka.security]` and `extra` lines to `[kafka]`.
    pub fn kafka_toml(&self, extra: &str, security: &str) -> String {
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\n{extra}\n[kafka.security]\nca_file = \"{}\"\n{security}\n",
            self.bootstrap,
            self.pki.ca.display()
        )
    }

    /// `[kafka.security]` lines for the client certificate, its key password read from a file.
    pub fn client_certificate_toml(&self) -> String {
        let password = self.dir.path().join("client-key-password");
        std::fs::write(&password, Pki::CLIENT_KEY_PASSWORD).unwrap();
        format!(
            "protocol = \"SSL\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nkey_password = {{ file = \"{}\" }}\n",
            self.pki.client_cert.display(),
            self.pki.client_key.display(),
            password.display()
        )
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        let _ = self.stunnel.kill();
        let _ = self.stunnel.wait();
    }
}

/// Stores SCRAM-SHA-512 credentials through the admin API (AlterUserScramCredentials), with
/// Python's confluent-kafka: rust-rdkafka does not offer that call.
fn store_scram_credentials(bootstrap: &str, user: &str, password: &str) {
    let script = r#"
import sys
from confluent_kafka.admin import AdminClient, UserScramCredentialUpsertion, ScramCredentialInfo, ScramMechanism
bootstrap, user, password = sys.argv[1:4]
admin = AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})
upsert = UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), password.encode())
for future in admin.alter_user_scram_credentials([upsert]).values():
    future.result(timeout=30)
"#;
    let out = Command::new(python())
        .args(["-c", script, bootstrap, user, password])
        .output()
        .expect("running Python (make test installs confluent-kafka)");
    assert!(
        out.status.success(),
        "storing SCRAM credentials: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
