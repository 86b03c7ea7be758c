//! Pseudonyms: the keyed hashes that stand for a customer (by normalised email) and for a
//! person (the subject reference) in keys, Slack and the CRM's ids, so that neither carries
//! the email itself.

/// Customer hashes (of a normalised email): how a guest's orders and a later account are
/// linked without the email itself in keys, Slack or the CRM's ids. Keyed (HMAC-SHA-256): a
/// bare hash would be reversed by hashing a list of known emails.
#[derive(Clone)]
pub struct CustomerHasher {
    mac: hmac::Hmac<sha2::Sha256>,
}

impl CustomerHasher {
    pub fn new(key: &[u8]) -> CustomerHasher {
        use hmac::Mac;
        CustomerHasher {
            mac: hmac::Hmac::new_from_slice(key).expect("HMAC takes keys of any length"),
        }
    }

    /// The hasher a shop's events are normalised with: the installation's
    /// `privacy.customer_hash_key`, or else a key derived from the shop's webhook secret (so
    /// that the default is keyed too, at the price that rotating that secret starts new
    /// hashes — set `privacy.customer_hash_key` to rotate freely).
    pub fn for_shop(config: &crate::config::Config, shop_id: &str) -> CustomerHasher {
        if let Some(key) = crate::secret::resolve_secret(&config.privacy.customer_hash_key, &None) {
            return CustomerHasher::new(key.as_bytes());
        }
        let secret = config
            .shops
            .iter()
            .find(|s| s.id == shop_id)
            .and_then(|s| s.resolved_secret())
            .unwrap_or_default();
        CustomerHasher::new(&derive(
            secret.as_bytes(),
            b"woostream customer hash key v1",
        ))
    }

    /// A person's pseudonym in the key topic: 32 hex characters of HMAC(key, shop, customer
    /// key), so that the topic names no account id and no email hash.
    pub fn subject_ref(&self, shop_id: &str, customer: &str) -> String {
        use hmac::Mac;
        let mut mac = self.mac.clone();
        mac.update(b"woostream subject v1\0");
        mac.update(shop_id.as_bytes());
        mac.update(b"\0");
        mac.update(customer.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// A fingerprint of a WooCommerce customer's identity (names and both addresses, as its
    /// REST and webhook JSON has them): the shop writer stores it with what it writes from the
    /// CRM, and the producer recognises the shop's resulting webhook by it (the identity is
    /// still exactly what the CRM wrote), so that it does not go back to the CRM.
    pub fn identity_fingerprint(&self, customer: &serde_json::Value) -> String {
        use hmac::Mac;
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().trim().to_string();
        let mut mac = self.mac.clone();
        // v2: the account email counts too (a later change of it alone is the shop's own and
        // must reach the CRM, not be taken for the CRM's echo).
        mac.update(b"woostream identity v2");
        for part in ["email", "first_name", "last_name"] {
            mac.update(b"\0");
            mac.update(text(&customer[part]).as_bytes());
        }
        for address in ["billing", "shipping"] {
            for part in crate::config::crm::ADDRESS_FIELDS {
                mac.update(b"\0");
                mac.update(text(&customer[address][part]).as_bytes());
            }
        }
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// 32 hex characters of HMAC(key, trimmed lower-case email); `None` for an empty email.
    pub fn email_hash(&self, email: &str) -> Option<String> {
        use hmac::Mac;
        let normalised = email.trim().to_lowercase();
        if normalised.is_empty() {
            return None;
        }
        let mut mac = self.mac.clone();
        mac.update(normalised.as_bytes());
        Some(hex::encode(&mac.finalize().into_bytes()[..16]))
    }
}

fn derive(secret: &[u8], purpose: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(secret).expect("any key length");
    mac.update(purpose);
    mac.finalize().into_bytes().to_vec()
}

impl std::fmt::Debug for CustomerHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerHasher(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::CustomerHasher;

    #[test]
    fn customer_hashes_are_keyed_stable_and_normalised() {
        let a = CustomerHasher::new(b"installation key");
        let b = CustomerHasher::new(b"another installation");
        let h = a.email_hash(" Jane.Roe@Example.com ").unwrap();
        assert_eq!(h.len(), 32);
        assert_eq!(a.email_hash("jane.roe@example.com").unwrap(), h);
        assert_ne!(b.email_hash("jane.roe@example.com").unwrap(), h);
        // Not the bare SHA-256 anyone can compute from a list of emails.
        use sha2::Digest;
        let bare = hex::encode(&sha2::Sha256::digest(b"jane.roe@example.com")[..16]);
        assert_ne!(h, bare);
        assert_eq!(a.email_hash("  "), None);
    }
}
