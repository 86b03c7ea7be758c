#!/usr/bin/env python3
"""A genuine WooCommerce on loopback, for woostream's tests: nothing of it is simulated.

WordPress and WooCommerce come from their release archives (unmodified; WooCommerce's archive
carries its built vendor/ folder) in $WOOSTREAM_REALWOO_DIR. They run on Debian's PHP (its
built-in server, pretty permalinks through a router) and MariaDB (its own data directory and
socket in a temporary folder, no TCP port, no system service touched), with HPOS order
storage, stock management, reviews and guest checkout on.

The only code added to the shop is a must-use plugin made of WordPress and WooCommerce filters:
- loopback and any port are allowed as webhook targets (WordPress refuses them by default);
- webhooks are delivered synchronously, at the end of the request that fired them, so a test
  knows when deliveries are done; every REST namespace is then loaded, because WooCommerce
  builds order payloads with an internal REST request;
- mail is written to a file (there is no mail server).
WooCommerce's own delivery, signing, failure counting and REST authentication are untouched.

The home URL follows the Host header of the request, as a shop reached under several names
does: a request made to http://localhost:PORT fires webhooks whose X-WC-Webhook-Source is that
name rather than http://127.0.0.1:PORT.

Usage: realshop.py  — prints one JSON line (url, port, consumer key and secret, admin user)
when the shop answers, then serves until its standard input closes (or SIGTERM), and removes
everything it made. The unpacked archives are cached in ~/.cache/woostream/realwoo.
"""
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

WORDPRESS = "wordpress-6.8.8.tar.gz"
WOOCOMMERCE = "woocommerce-10.0.2.tar.gz"
PACKAGES = ["php8.2-cli", "php8.2-mysql", "php8.2-curl", "php8.2-mbstring", "php8.2-xml",
            "php8.2-gd", "php8.2-intl", "php8.2-zip", "php8.2-bcmath", "mariadb-server"]

HOW_TO_GET = f"""The real-WooCommerce tests need the two release archives in one folder, named by
WOOSTREAM_REALWOO_DIR:
  {WORDPRESS}     WordPress 6.8.8 as released (wordpress.org/wordpress-6.8.8.tar.gz)
  {WOOCOMMERCE}   WooCommerce 10.0.2 as released on wordpress.org (the plugin zip,
                              repacked as .tar.gz with its top folder woocommerce/)
"""


def log(*a):
    print("realshop:", *a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ensure_packages():
    missing = [p for p in PACKAGES
               if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if missing:
        log("installing", " ".join(missing))
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
                       + missing, check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def unpacked(archives):
    """The pristine WordPress tree with WooCommerce in its plugins, unpacked once."""
    cache = os.path.join(os.path.expanduser("~/.cache/woostream/realwoo"),
                         WORDPRESS[:-7] + "+" + WOOCOMMERCE[:-7])
    if os.path.exists(os.path.join(cache, ".complete")):
        return cache
    shutil.rmtree(cache, ignore_errors=True)
    os.makedirs(cache)
    with tarfile.open(os.path.join(archives, WORDPRESS)) as t:
        t.extractall(cache, filter="tar")
    plugins = os.path.join(cache, "wordpress", "wp-content", "plugins")
    with tarfile.open(os.path.join(archives, WOOCOMMERCE)) as t:
        t.extractall(plugins, filter="tar")
    # The release mirror was committed from a case-insensitive file system: the autoloader asks
    # for WPCacheEngine.php, the archive holds WpCacheEngine.php.
    caching = os.path.join(plugins, "woocommerce", "src", "Caching")
    if not os.path.exists(os.path.join(caching, "WPCacheEngine.php")):
        shutil.copy(os.path.join(caching, "WpCacheEngine.php"),
                    os.path.join(caching, "WPCacheEngine.php"))
    open(os.path.join(cache, ".complete"), "w").close()
    return cache


MU_PLUGIN = r"""<?php
// woostream's tests: WordPress/WooCommerce filters only (see tests/woocommerce/realshop.py).
add_filter('http_request_host_is_external', function ($external, $host) {
    return $external || $host === 'localhost' || $host === '::1' || str_starts_with($host, '127.');
}, 10, 2);
add_filter('http_allowed_safe_ports', function ($ports) { return range(1, 65535); });
add_filter('woocommerce_webhook_deliver_async', '__return_false');
add_filter('wc_rest_should_load_namespace', '__return_true');
add_filter('pre_wp_mail', function ($null, $atts) {
    file_put_contents(WOOSTREAM_MAIL_LOG, json_encode(['to' => $atts['to'], 'subject' => $atts['subject']]) . "\n", FILE_APPEND);
    return true;
}, 10, 2);
"""

ROUTER = r"""<?php
// PHP's built-in server: existing files as they are, everything else to WordPress.
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
if ($path !== '/' && is_file(__DIR__ . $path) && !str_ends_with($path, '.php')) { return false; }
if (str_ends_with($path, '.php') && is_file(__DIR__ . $path)) { chdir(dirname(__DIR__ . $path)); require __DIR__ . $path; return; }
$_SERVER['SCRIPT_NAME'] = '/index.php';
require __DIR__ . '/index.php';
"""

INSTALL = r"""<?php
define('WP_INSTALLING', true);
$_SERVER['HTTP_HOST'] = getenv('SHOP_HOST');
require __DIR__ . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
require_once ABSPATH . 'wp-admin/includes/plugin.php';
wp_install('woostream real shop', 'admin', 'admin@example.test', true, '', 'admin-password');
update_option('permalink_structure', '/%postname%/');
update_option('woocommerce_custom_orders_table_enabled', 'yes');
update_option('woocommerce_custom_orders_table_data_sync_enabled', 'no');
update_option('woocommerce_feature_custom_order_tables_enabled', 'yes');
$r = activate_plugin('woocommerce/woocommerce.php');
if (is_wp_error($r)) { fwrite(STDERR, $r->get_error_message()); exit(1); }
"""

SETUP = r"""<?php
$_SERVER['HTTP_HOST'] = getenv('SHOP_HOST');
require __DIR__ . '/wp-load.php';
WC_Install::install();
foreach ([
    'woocommerce_custom_orders_table_enabled' => 'yes',
    'woocommerce_custom_orders_table_data_sync_enabled' => 'no',
    'woocommerce_currency' => 'EUR',
    'woocommerce_manage_stock' => 'yes',
    'woocommerce_notify_low_stock_amount' => '3',
    'woocommerce_notify_no_stock_amount' => '0',
    'woocommerce_enable_reviews' => 'yes',
    'woocommerce_enable_review_rating' => 'yes',
    'woocommerce_review_rating_verification_required' => 'no',
    'woocommerce_enable_guest_checkout' => 'yes',
    'woocommerce_coming_soon' => 'no',
    'woocommerce_store_pages_only' => 'no',
    'woocommerce_allow_tracking' => 'no',
    'woocommerce_show_marketplace_suggestions' => 'no',
    'woocommerce_onboarding_profile' => ['completed' => true, 'skipped' => true],
    'woocommerce_calc_taxes' => 'no',
    'comment_moderation' => '0',
    'comment_previously_approved' => '0',
] as $k => $v) { update_option($k, $v); }
update_option('woocommerce_cod_settings', ['enabled' => 'yes', 'title' => 'Cash on delivery']);
update_option('woocommerce_bacs_settings', ['enabled' => 'yes', 'title' => 'Direct bank transfer']);
$zone = new WC_Shipping_Zone();
$zone->set_zone_name('Everywhere');
$zone->save();
$zone->add_shipping_method('free_shipping');
global $wpdb;
$ck = getenv('SHOP_CK');
$wpdb->insert($wpdb->prefix . 'woocommerce_api_keys', [
    'user_id' => 1,
    'description' => 'woostream tests',
    'permissions' => 'read_write',
    'consumer_key' => wc_api_hash($ck),
    'consumer_secret' => getenv('SHOP_CS'),
    'truncated_key' => substr($ck, -7),
]);
flush_rewrite_rules();
echo "ok\n";
"""

# What only the shop's admin screens do (the REST API has no restore): run from PHP's command
# line, as WP-CLI or cron would, under the host name in SHOP_HOST.
UNTRASH = r"""<?php
$_SERVER['HTTP_HOST'] = getenv('SHOP_HOST');
require __DIR__ . '/wp-load.php';
$order = wc_get_order((int) $argv[1]);
if (!$order || !$order->untrash()) { fwrite(STDERR, "cannot restore order {$argv[1]}\n"); exit(1); }
echo $order->get_status(), "\n";
"""


def wait_for(predicate, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise SystemExit(f"realshop: {what} did not happen within {timeout} s")


def main():
    archives = os.environ.get("WOOSTREAM_REALWOO_DIR", "")
    if not all(os.path.exists(os.path.join(archives, a)) for a in (WORDPRESS, WOOCOMMERCE)):
        print(HOW_TO_GET, file=sys.stderr)
        sys.exit(2)
    ensure_packages()
    pristine = unpacked(archives)
    work = tempfile.mkdtemp(prefix="woostream-realshop-")
    children = []

    def stop(*_):
        # Each child leads its own process group: PHP's server forks its workers, and they
        # must go with it.
        for c in reversed(children):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(c.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    c.wait(10)
                    break
                except subprocess.TimeoutExpired:
                    continue
        shutil.rmtree(work, ignore_errors=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        started = time.time()
        root = os.path.join(work, "site")
        # Hard links: nothing in the pristine tree is written to; new files are the run's own.
        subprocess.run(["cp", "-al", os.path.join(pristine, "wordpress"), root], check=True)
        os.makedirs(os.path.join(root, "wp-content", "mu-plugins"), exist_ok=True)
        mail_log = os.path.join(work, "mail.log")

        # MariaDB on a socket only.
        datadir, sock = os.path.join(work, "db"), os.path.join(work, "db.sock")
        user = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(["mariadb-install-db", f"--datadir={datadir}", "--auth-root-authentication-method=normal",
                        "--skip-test-db"] + user, check=True, capture_output=True)
        db_log = open(os.path.join(work, "db.log"), "w")
        children.append(subprocess.Popen(
            ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={datadir}", f"--socket={sock}",
             "--skip-networking", f"--pid-file={os.path.join(work, 'db.pid')}",
             "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=2"] + user,
            stdout=db_log, stderr=db_log, start_new_session=True))
        wait_for(lambda: os.path.exists(sock), "MariaDB's socket")
        wait_for(lambda: subprocess.run(["mariadb", f"--socket={sock}", "-uroot", "-e",
                                         "CREATE DATABASE IF NOT EXISTS wordpress"],
                                        capture_output=True).returncode == 0, "MariaDB answering")

        port = free_port()
        host = f"127.0.0.1:{port}"
        salt = lambda: hashlib.sha256(os.urandom(32)).hexdigest()
        with open(os.path.join(root, "wp-config.php"), "w") as f:
            f.write(f"""<?php
define('DB_NAME', 'wordpress');
define('DB_USER', 'root');
define('DB_PASSWORD', '');
define('DB_HOST', 'localhost:{sock}');
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
$table_prefix = 'wp_';
foreach (['AUTH_KEY','SECURE_AUTH_KEY','LOGGED_IN_KEY','NONCE_KEY','AUTH_SALT','SECURE_AUTH_SALT','LOGGED_IN_SALT','NONCE_SALT'] as $k) {{ define($k, '{salt()}' . $k); }}
// The home URL is the name the shop was reached under (see realshop.py).
$woostream_host = $_SERVER['HTTP_HOST'] ?? '{host}';
define('WP_HOME', 'http://' . $woostream_host);
define('WP_SITEURL', 'http://' . $woostream_host);
define('DISABLE_WP_CRON', true);
define('WP_DEBUG', false);
define('AUTOMATIC_UPDATER_DISABLED', true);
define('WP_HTTP_BLOCK_EXTERNAL', false);
define('WOOSTREAM_MAIL_LOG', '{mail_log}');
if (!defined('ABSPATH')) {{ define('ABSPATH', __DIR__ . '/'); }}
require_once ABSPATH . 'wp-settings.php';
""")
        for name, text in [("router.php", ROUTER), ("woostream-install.php", INSTALL),
                           ("woostream-setup.php", SETUP), ("woostream-untrash.php", UNTRASH)]:
            with open(os.path.join(root, name), "w") as f:
                f.write(text)
        ck = "ck_" + os.urandom(20).hex()
        cs = "cs_" + os.urandom(20).hex()
        env = {**os.environ, "SHOP_HOST": host, "SHOP_CK": ck, "SHOP_CS": cs}
        php = ["php", "-d", "memory_limit=512M", "-d", "display_errors=stderr"]
        for script in ("woostream-install.php", "woostream-setup.php"):
            r = subprocess.run(php + [script], cwd=root, env=env, capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"realshop: {script} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        # The must-use plugin only now: the install itself delivers nothing.
        with open(os.path.join(root, "wp-content", "mu-plugins", "woostream-tests.php"), "w") as f:
            f.write(MU_PLUGIN)

        server_log = open(os.path.join(work, "php-server.log"), "w")
        children.append(subprocess.Popen(
            php + ["-S", host, "-t", root, os.path.join(root, "router.php")],
            cwd=root, env={**os.environ, "PHP_CLI_SERVER_WORKERS": "4"},
            stdout=server_log, stderr=server_log, start_new_session=True))

        def answers():
            try:
                with urllib.request.urlopen(f"http://{host}/wp-json/", timeout=5) as r:
                    return r.status == 200
            except Exception:
                return False
        wait_for(answers, "the shop answering", 60)
        print(json.dumps({
            "url": f"http://{host}/",
            "port": port,
            "rest": f"http://{host}/wp-json/wc/v3/",
            "consumer_key": ck,
            "consumer_secret": cs,
            "work": work,
            "root": root,
            "mail_log": mail_log,
            "server_log": os.path.join(work, "php-server.log"),
            "seconds_to_start": round(time.time() - started, 1),
        }), flush=True)
        # Serve until the test closes our standard input.
        sys.stdin.read()
    finally:
        stop()


if __name__ == "__main__":
    main()
