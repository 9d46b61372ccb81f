//! Certificates and the TLS acceptor.
//!
//! With `--cert`/`--key` the given PEM files are used as they are. Otherwise the server
//! keeps a local CA in the state directory (ECDSA P-256, 10 years) and a server
//! certificate signed by it (397 days, SANs for every LAN name and address the appliance
//! answers to). Tablets trust the CA once, through `/ca.crt`. A CA created here carries
//! critical name constraints (LAN names and private addresses only), so a leaked `ca.key`
//! cannot mint a certificate for anyone else's site; a CA already on disk is kept as it
//! is, because tablets trust it.
//!
//! The server certificate is checked at start and then by [`LocalCa::keep_renewed`], a
//! task on the one executor: every `--cert-check-interval` and whenever the machine's
//! names or addresses change (polled every minute). It is re-issued when it is within
//! 30 days of expiry or does not cover the current names, and the [`Acceptor`] switches
//! to it for new connections; open connections keep the one they started with. The
//! acceptor speaks TLS 1.3 and TLS 1.2 with ECDHE and AEAD only, over X25519 or P-256.
//!
//! Never does: file I/O except at start and at a renewal (a few small files, once a day
//! at most unless the addresses change), or log a key.

use crate::tlsio::TlsStream;
use futures_lite::{AsyncRead, AsyncWrite};
use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::cipher::{Cipher, CipherRef};
use openssl::cipher_ctx::CipherCtx;
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{Ssl, SslAcceptor, SslMethod, SslMode, SslOptions, SslVersion};
use openssl::stack::Stack;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509, X509Builder, X509Extension, X509NameBuilder, X509StoreContext};
use std::cell::RefCell;
use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const CA_DAYS: u32 = 3650;
const SERVER_DAYS: u32 = 397;
const RENEW_DAYS: u32 = 30;
/// How often the running server looks for changed names and addresses.
const ADDRESS_POLL: Duration = Duration::from_secs(60);

/// TLS 1.2 suites offered: ECDHE key exchange and AEAD ciphers only, AES-GCM first.
const TLS12_AES_FIRST: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
    ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:\
    ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";
/// The same suites, ChaCha20-Poly1305 first.
const TLS12_CHACHA_FIRST: &str = "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:\
    ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
    ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";
/// TLS 1.3 suites (all AEAD), AES-GCM first.
const TLS13_AES_FIRST: &str =
    "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384";
/// The same suites, ChaCha20-Poly1305 first.
const TLS13_CHACHA_FIRST: &str =
    "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384";
/// Key exchange groups, preferred first.
const GROUPS: &str = "X25519:P-256";

/// DNS names a CA created here may vouch for (each with its subdomains), besides the
/// host name. Written without a leading dot: RFC 5280 matches "local" to `local` and
/// `*.local`, and every verifier agrees on that form.
const PERMITTED_DNS: [&str; 5] = ["localhost", "local", "lan", "home.arpa", "internal"];

/// Why certificates could not be prepared or a handshake failed.
#[derive(Debug)]
pub enum TlsError {
    /// Reading or writing a file failed.
    Io(String, std::io::Error),
    /// OpenSSL refused a key, certificate or operation.
    Ssl(String),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            TlsError::Io(what, e) => write!(f, "{what}: {e}"),
            TlsError::Ssl(e) => write!(f, "TLS: {e}"),
        }
    }
}

impl From<openssl::error::ErrorStack> for TlsError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        TlsError::Ssl(e.to_string())
    }
}

impl From<openssl::ssl::Error> for TlsError {
    fn from(e: openssl::ssl::Error) -> Self {
        TlsError::Ssl(e.to_string())
    }
}

/// The acceptor new connections use. A renewal swaps in a new one; a handshake takes the
/// current one (a reference count) and the borrow ends before the first `.await`.
pub struct Acceptor(RefCell<SslAcceptor>);

impl Acceptor {
    pub fn new(a: SslAcceptor) -> Acceptor {
        Acceptor(RefCell::new(a))
    }

    /// Use `a` for every connection accepted from now on.
    pub fn replace(&self, a: SslAcceptor) {
        *self.0.borrow_mut() = a;
    }

    /// Run the server side of a TLS handshake on `io`.
    pub async fn accept<S>(&self, io: S) -> Result<TlsStream<S>, TlsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let ssl = Ssl::new(self.0.borrow().context())?;
        Ok(TlsStream::accept(ssl, io).await?)
    }

    /// Seconds until the certificate new connections get expires (negative: expired).
    pub fn expires_in(&self) -> Option<i64> {
        let a = self.0.borrow();
        a.context().certificate().and_then(seconds_left)
    }
}

/// Seconds from now until `cert` expires (negative once it has).
pub fn seconds_left(cert: &openssl::x509::X509Ref) -> Option<i64> {
    let now = Asn1Time::days_from_now(0).ok()?;
    let d = now.diff(cert.not_after()).ok()?;
    Some(i64::from(d.days) * 86_400 + i64::from(d.secs))
}

/// The CA's SHA-256 fingerprint (as the journal shows it) and its seconds to expiry.
pub fn ca_summary(ca_pem: &[u8]) -> Option<(String, i64)> {
    let ca = X509::from_pem(ca_pem).ok()?;
    Some((fingerprint(&ca), seconds_left(&ca)?))
}

/// What the rest of the server gets: the acceptor, for a local CA its PEM, and the CA
/// itself to keep the server certificate renewed.
pub struct Tls {
    pub acceptor: Acceptor,
    pub ca_pem: Option<Vec<u8>>,
    pub local: Option<LocalCa>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|e| TlsError::Io(path.display().to_string(), e))
}

/// Write a file atomically (temp + rename); `private` files get mode 0600.
fn write(path: &Path, data: &[u8], private: bool) -> Result<(), TlsError> {
    let io = |e| TlsError::Io(path.display().to_string(), e);
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

/// An acceptor for `chain` (leaf first, then intermediates) and `key`: TLS 1.3, and
/// TLS 1.2 with ECDHE + AEAD only; X25519 and P-256; the server picks the cipher this CPU
/// runs faster ([`chacha_is_faster`]); record buffers released while a connection is
/// idle. OpenSSL reads ahead: one `recvfrom` fetches a record's header and
/// body, and a burst of records, instead of two reads per record (see BENCHMARKS.md).
pub fn acceptor(chain: &[X509], key: &PKey<Private>) -> Result<SslAcceptor, TlsError> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    let chacha = chacha_is_faster();
    b.set_cipher_list(if chacha {
        TLS12_CHACHA_FIRST
    } else {
        TLS12_AES_FIRST
    })?;
    b.set_ciphersuites(if chacha {
        TLS13_CHACHA_FIRST
    } else {
        TLS13_AES_FIRST
    })?;
    b.set_options(SslOptions::CIPHER_SERVER_PREFERENCE);
    b.set_groups_list(GROUPS)?;
    b.set_mode(SslMode::RELEASE_BUFFERS);
    b.set_read_ahead(true);
    let (leaf, rest) = chain
        .split_first()
        .ok_or_else(|| TlsError::Ssl("no certificate in the chain".into()))?;
    b.set_certificate(leaf)?;
    for c in rest {
        b.add_extra_chain_cert(c.clone())?;
    }
    b.set_private_key(key)?;
    b.check_private_key()?;
    Ok(b.build())
}

/// Whether this CPU seals TLS records faster with ChaCha20-Poly1305 than with AES-128-GCM,
/// timed once per process (best of three runs of 16 KiB each: a few milliseconds at most
/// on the slowest Pi). Every record a tablet sends or receives is sealed or opened on the
/// appliance's one core, so the appliance's speed decides, not the tablet's: a Pi 3 or
/// Pi 4 has no AES instructions and runs ChaCha20 several times faster, a Pi 5 or an
/// x86 machine may go either way (BENCHMARKS.md, "The architecture change, before and
/// after"). Both are TLS 1.3 suites every browser offers.
fn chacha_is_faster() -> bool {
    static FASTER: OnceLock<bool> = OnceLock::new();
    *FASTER.get_or_init(|| {
        let (chacha, aes) = (0..3).fold((Duration::MAX, Duration::MAX), |(c, a), _| {
            (
                c.min(seal_time(Cipher::chacha20_poly1305())),
                a.min(seal_time(Cipher::aes_128_gcm())),
            )
        });
        log::debug!("sealing 16 KiB: ChaCha20-Poly1305 {chacha:?}, AES-128-GCM {aes:?}");
        chacha < aes
    })
}

/// Time to seal sixteen 1 KiB records with `cipher` as TLS does: the key set once, a
/// new nonce, the record header as associated data and a tag for every record
/// (`Duration::MAX` if the cipher is missing).
fn seal_time(cipher: &CipherRef) -> Duration {
    let (key, header, record) = ([7u8; 32], [23u8, 3, 3, 4, 16], [0u8; 1024]);
    let mut out = [0u8; 1024 + 16];
    let started = Instant::now();
    let sealed = (|| {
        let mut ctx = CipherCtx::new()?;
        ctx.encrypt_init(Some(cipher), Some(&key[..cipher.key_length()]), None)?;
        for n in 0u8..16 {
            ctx.encrypt_init(None, None, Some(&[n; 12]))?;
            ctx.cipher_update(&header, None)?;
            ctx.cipher_update(&record, Some(&mut out))?;
            ctx.cipher_final(&mut out)?;
            ctx.tag(&mut out[..16])?;
        }
        Ok::<_, ErrorStack>(())
    })();
    match sealed {
        Ok(()) => started.elapsed(),
        Err(_) => Duration::MAX,
    }
}

/// Use the operator's own certificate and key (PKCS#8, SEC1 or PKCS#1 PEM).
pub fn from_files(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
    let chain = X509::stack_from_pem(&read(cert)?)?;
    let key = PKey::private_key_from_pem(&read(key)?)?;
    Ok(Tls {
        acceptor: Acceptor::new(acceptor(&chain, &key)?),
        ca_pem: None,
        local: None,
    })
}

/// The names and addresses the server certificate covers, sorted and deduplicated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Names {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl Names {
    /// localhost, loopback, the host name, `<host>.local`, and the current addresses.
    pub fn of_this_machine() -> Names {
        let mut dns = vec!["localhost".to_string()];
        if let Some(h) = hostname() {
            dns.push(format!("{h}.local"));
            dns.push(h);
        }
        let mut ips = local_addresses();
        ips.push(IpAddr::from([127, 0, 0, 1]));
        ips.push(IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
        dns.sort();
        dns.dedup();
        ips.sort();
        ips.dedup();
        Names { dns, ips }
    }

    /// The names a CA with [`name_constraints`] may vouch for, and those it may not
    /// (public addresses, other domains), which the certificate leaves out.
    fn lan_only(&self) -> (Names, Vec<String>) {
        let host = hostname();
        let (mut kept, mut left_out) = (Names::default(), Vec::new());
        for d in &self.dns {
            if permitted_dns(d, host.as_deref()) {
                kept.dns.push(d.clone());
            } else {
                left_out.push(d.clone());
            }
        }
        for ip in &self.ips {
            if permitted_ip(ip) {
                kept.ips.push(*ip);
            } else {
                left_out.push(ip.to_string());
            }
        }
        (kept, left_out)
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        for d in &self.dns {
            s.push_str(&format!("DNS:{d}\n"));
        }
        for i in &self.ips {
            s.push_str(&format!("IP:{i}\n"));
        }
        s
    }
}

fn hostname() -> Option<String> {
    let h = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim().to_ascii_lowercase();
    let ok =
        !h.is_empty() && h.len() <= 63 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    ok.then_some(h)
}

/// This machine's unicast addresses, from /proc (no extra crate, no unsafe).
fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    // IPv4: the "/32 host LOCAL" leaves of the local routing table.
    if let Ok(trie) = fs::read_to_string("/proc/net/fib_trie") {
        let mut last: Option<std::net::Ipv4Addr> = None;
        for line in trie.lines() {
            let t = line.trim();
            if let Some(ip) = t.strip_prefix("|-- ") {
                last = ip.parse().ok();
            } else if t.contains("/32 host LOCAL")
                && let Some(ip) = last.filter(|ip| !ip.is_loopback())
            {
                out.push(IpAddr::V4(ip));
            }
        }
    }
    // IPv6: one address per line, 32 hex digits first.
    if let Ok(v6) = fs::read_to_string("/proc/net/if_inet6") {
        for line in v6.lines() {
            let Some(hex) = line.split_whitespace().next().filter(|h| h.len() == 32) else {
                continue;
            };
            let Ok(n) = u128::from_str_radix(hex, 16) else {
                continue;
            };
            let ip = std::net::Ipv6Addr::from(n);
            // Link-local addresses need a zone and can't be in a certificate usefully.
            if !ip.is_loopback() && (ip.segments()[0] & 0xffc0) != 0xfe80 {
                out.push(IpAddr::V6(ip));
            }
        }
    }
    out
}

/// Whether `name` is `base` or below it, as a name constraint matches.
fn under(name: &str, base: &str) -> bool {
    name == base || name.strip_suffix(base).is_some_and(|s| s.ends_with('.'))
}

fn permitted_dns(name: &str, host: Option<&str>) -> bool {
    PERMITTED_DNS
        .iter()
        .copied()
        .chain(host)
        .any(|b| under(name, b))
}

/// The address ranges of [`name_constraints`], as (address, prefix length).
const PERMITTED_V4: [([u8; 4], u8); 5] = [
    ([127, 0, 0, 0], 8),
    ([10, 0, 0, 0], 8),
    ([172, 16, 0, 0], 12),
    ([192, 168, 0, 0], 16),
    ([169, 254, 0, 0], 16),
];
const PERMITTED_V6: [(u128, u8); 3] = [
    (1, 128),            // ::1
    (0xfe80 << 112, 10), // link-local
    (0xfc00 << 112, 7),  // unique local
];

fn mask(bits: u32, len: u8) -> u128 {
    match len {
        0 => 0,
        n => (!0u128 << (128 - u32::from(n))) >> (128 - bits),
    }
}

fn permitted_ip(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => PERMITTED_V4.iter().any(|&(net, len)| {
            let m = mask(32, len) as u32;
            u32::from(*a) & m == u32::from(Ipv4Addr::from(net))
        }),
        IpAddr::V6(a) => PERMITTED_V6
            .iter()
            .any(|&(net, len)| u128::from(*a) & mask(128, len) == net),
    }
}

/// One DER element: tag, length, contents.
fn der(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len().to_be_bytes();
    let skip = len.iter().take_while(|&&b| b == 0).count();
    match body.len() {
        0..=127 => out.push(body.len() as u8),
        _ => {
            out.push(0x80 | (len.len() - skip) as u8);
            out.extend_from_slice(&len[skip..]);
        }
    }
    out.extend_from_slice(body);
    out
}

/// The critical NameConstraints extension (RFC 5280 4.2.1.10) of a CA created here:
/// permitted subtrees only, for [`PERMITTED_DNS`], the host name, and the loopback,
/// private, link-local and unique-local address ranges. Built as DER, because OpenSSL's
/// text form for it goes through a deprecated, file-reading configuration parser.
fn name_constraints(host: Option<&str>) -> Result<X509Extension, TlsError> {
    let subtree = |name: Vec<u8>| der(0x30, &name);
    let mut subtrees = Vec::new();
    for d in PERMITTED_DNS.iter().copied().chain(host) {
        subtrees.extend(subtree(der(0x82, d.as_bytes())));
    }
    for (net, len) in PERMITTED_V4 {
        let mut v = net.to_vec();
        v.extend_from_slice(&(mask(32, len) as u32).to_be_bytes());
        subtrees.extend(subtree(der(0x87, &v)));
    }
    for (net, len) in PERMITTED_V6 {
        let mut v = net.to_be_bytes().to_vec();
        v.extend_from_slice(&mask(128, len).to_be_bytes());
        subtrees.extend(subtree(der(0x87, &v)));
    }
    let value = der(0x30, &der(0xa0, &subtrees));
    let oid = Asn1Object::from_str("2.5.29.30")?;
    let value = Asn1OctetString::new_from_bytes(&value)?;
    Ok(X509Extension::new_from_der(&oid, true, &value)?)
}

fn new_key() -> Result<PKey<Private>, TlsError> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
}

fn serial() -> Result<Asn1Integer, TlsError> {
    let mut bn = BigNum::new()?;
    bn.rand(127, MsbOption::MAYBE_ZERO, false)?;
    Ok(bn.to_asn1_integer()?)
}

fn builder(cn: &str, days: u32, key: &PKey<Private>) -> Result<X509Builder, TlsError> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "intercomd")?;
    name.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = serial()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    // Backdate an hour so a tablet with a slightly slow clock accepts it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (not_before, not_after) = (
        Asn1Time::from_unix((now - 3600) as _)?,
        Asn1Time::days_from_now(days)?,
    );
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    b.set_pubkey(key)?;
    Ok(b)
}

fn make_ca() -> Result<(X509, PKey<Private>), TlsError> {
    let key = new_key()?;
    let host = hostname();
    let cn = format!(
        "intercomd local CA ({})",
        host.as_deref().unwrap_or("intercom")
    );
    let mut b = builder(&cn, CA_DAYS, &key)?;
    b.append_extension(BasicConstraints::new().critical().ca().pathlen(0).build()?)?;
    b.append_extension(name_constraints(host.as_deref())?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    b.sign(&key, MessageDigest::sha256())?;
    Ok((b.build(), key))
}

fn make_server(
    ca: &X509,
    ca_key: &PKey<Private>,
    names: &Names,
) -> Result<(X509, PKey<Private>), TlsError> {
    let key = new_key()?;
    let cn = names
        .dns
        .iter()
        .find(|d| d.ends_with(".local"))
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    let mut b = builder(&cn, SERVER_DAYS, &key)?;
    b.set_issuer_name(ca.subject_name())?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    let mut san = SubjectAlternativeName::new();
    for d in &names.dns {
        san.dns(d);
    }
    for ip in &names.ips {
        san.ip(&ip.to_string());
    }
    let san = san.build(&b.x509v3_context(Some(ca), None))?;
    b.append_extension(san)?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(ca), None))?;
    b.append_extension(ski)?;
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&b.x509v3_context(Some(ca), None))?;
    b.append_extension(aki)?;
    b.sign(ca_key, MessageDigest::sha256())?;
    Ok((b.build(), key))
}

/// SHA-256 fingerprint as colon-separated hex, the form phones show.
pub fn fingerprint(cert: &X509) -> String {
    cert.digest(MessageDigest::sha256())
        .map(|d| {
            d.iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .unwrap_or_default()
}

/// Whether `cert` verifies under `ca` alone, name constraints included.
fn verifies(ca: &X509, cert: &X509) -> Result<bool, TlsError> {
    let mut store = X509StoreBuilder::new()?;
    store.add_cert(ca.clone())?;
    let store = store.build();
    let mut ctx = X509StoreContext::new()?;
    let chain = Stack::new()?;
    Ok(ctx.init(&store, cert, &chain, |c| c.verify_cert())?)
}

/// The local CA, and the server certificate it issued, as the running server sees them.
pub struct LocalCa {
    dir: PathBuf,
    ca: X509,
    ca_key: PKey<Private>,
    /// What the current server certificate covers (as in `server.names`).
    names: String,
    /// The server certificate in use, once there is one.
    server: Option<X509>,
}

/// Load or create the local CA and server certificate in `dir`.
pub fn local_ca(dir: &Path, names: &Names) -> Result<Tls, TlsError> {
    fs::create_dir_all(dir).map_err(|e| TlsError::Io(dir.display().to_string(), e))?;
    let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let (ca, ca_pkey) = if ca_crt.exists() && ca_key.exists() {
        let ca = X509::from_pem(&read(&ca_crt)?)?;
        let key = PKey::private_key_from_pem(&read(&ca_key)?)?;
        (ca, key)
    } else {
        let (ca, key) = make_ca()?;
        write(&ca_key, &key.private_key_to_pem_pkcs8()?, true)?;
        write(&ca_crt, &ca.to_pem()?, false)?;
        log::info!("created a local certificate authority in {}", dir.display());
        (ca, key)
    };
    log::info!("CA fingerprint (SHA-256): {}", fingerprint(&ca));
    let ca_pem = ca.to_pem()?;
    let mut local = LocalCa {
        dir: dir.to_path_buf(),
        ca,
        ca_key: ca_pkey,
        names: String::new(),
        server: None,
    };
    let acceptor = match local.load_server(names)? {
        Some(a) => a,
        None => local.issue(names)?,
    };
    Ok(Tls {
        acceptor: Acceptor::new(acceptor),
        ca_pem: Some(ca_pem),
        local: Some(local),
    })
}

impl LocalCa {
    fn paths(&self) -> (PathBuf, PathBuf, PathBuf) {
        let d = &self.dir;
        (
            d.join("server.crt"),
            d.join("server.key"),
            d.join("server.names"),
        )
    }

    /// The acceptor for the server certificate on disk, if it is ours, covers `names`
    /// and is not due for renewal.
    fn load_server(&mut self, names: &Names) -> Result<Option<SslAcceptor>, TlsError> {
        let (crt, key, names_file) = self.paths();
        let found = (|| -> Option<(X509, PKey<Private>, String)> {
            let cert = X509::from_pem(&fs::read(&crt).ok()?).ok()?;
            let key = PKey::private_key_from_pem(&fs::read(&key).ok()?).ok()?;
            let covers = fs::read_to_string(&names_file).ok()?;
            Some((cert, key, covers))
        })();
        let Some((cert, key, covers)) = found else {
            return Ok(None);
        };
        if !cert.verify(&self.ca_key).unwrap_or(false) {
            return Ok(None);
        }
        self.names = covers;
        self.server = Some(cert.clone());
        if self.due(names)?.is_some() {
            return Ok(None);
        }
        Ok(Some(acceptor(&[cert, self.ca.clone()], &key)?))
    }

    /// Why the current server certificate should be replaced, if it should.
    fn due(&self, names: &Names) -> Result<Option<&'static str>, TlsError> {
        if names.lan_only().0.describe() != self.names {
            return Ok(Some("the names or addresses changed"));
        }
        match &self.server {
            Some(c) if c.not_after() >= Asn1Time::days_from_now(RENEW_DAYS)? => Ok(None),
            _ => Ok(Some("it expires within 30 days")),
        }
    }

    /// Issue and store a server certificate for `names` and return its acceptor. Names
    /// the CA's constraints would forbid are left out; under a CA created for another
    /// host name, so is the bare host name.
    fn issue(&mut self, names: &Names) -> Result<SslAcceptor, TlsError> {
        let (mut names, left_out) = names.lan_only();
        let wanted = names.describe();
        if !left_out.is_empty() {
            log::info!(
                "server certificate: leaving out {} (not a LAN name or address)",
                left_out.join(", ")
            );
        }
        let (mut cert, mut key) = make_server(&self.ca, &self.ca_key, &names)?;
        if !verifies(&self.ca, &cert)? {
            let host = hostname();
            names.dns.retain(|d| Some(d) != host.as_ref());
            log::info!(
                "server certificate: leaving out the host name (the CA was made for another)"
            );
            (cert, key) = make_server(&self.ca, &self.ca_key, &names)?;
            if !verifies(&self.ca, &cert)? {
                return Err(TlsError::Ssl(
                    "the issued server certificate does not verify under the CA".into(),
                ));
            }
        }
        let (crt, key_file, names_file) = self.paths();
        write(&key_file, &key.private_key_to_pem_pkcs8()?, true)?;
        write(&crt, &cert.to_pem()?, false)?;
        // The names asked for, not those issued, so a left-out host name is not asked
        // for again at every check.
        write(&names_file, wanted.as_bytes(), false)?;
        log::info!(
            "issued a server certificate for {} (valid until {})",
            names.describe().trim().replace('\n', ", "),
            cert.not_after()
        );
        self.names = wanted;
        self.server = Some(cert.clone());
        acceptor(&[cert, self.ca.clone()], &key)
    }

    /// Keep the server certificate current while the server runs: check it every
    /// `every` and whenever the names or addresses change, renew it when [`due`], and
    /// hand the new acceptor to `acceptor`. Runs forever on the caller's executor.
    ///
    /// [`due`]: LocalCa::due
    pub async fn keep_renewed(mut self, acceptor: &Acceptor, every: Duration) {
        let tick = every.min(ADDRESS_POLL);
        let mut checked = Instant::now();
        loop {
            smol::Timer::after(tick).await;
            let names = Names::of_this_machine();
            let moved = names.lan_only().0.describe() != self.names;
            if !moved && checked.elapsed() + tick / 2 < every {
                continue;
            }
            checked = Instant::now();
            let renewed = match self.due(&names) {
                Ok(Some(why)) => {
                    log::info!("renewing the server certificate: {why}");
                    self.issue(&names)
                }
                Ok(None) => continue,
                Err(e) => Err(e),
            };
            match renewed {
                Ok(a) => {
                    acceptor.replace(a);
                    log::info!("new connections use the renewed server certificate");
                }
                // The current certificate stays in use; the next check tries again.
                Err(e) => log::error!("renewing the server certificate failed: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_names_and_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.255.1",
            "192.168.1.20",
            "169.254.9.9",
        ] {
            assert!(permitted_ip(&ip.parse().unwrap()), "{ip}");
        }
        for ip in ["::1", "fe80::1", "fd12:3456::1", "fc00::1"] {
            assert!(permitted_ip(&ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "192.169.0.1",
            "100.64.0.1",
            "2001:db8::1",
            "::2",
        ] {
            assert!(!permitted_ip(&ip.parse().unwrap()), "{ip}");
        }
        assert!(permitted_dns("door.local", None));
        assert!(permitted_dns("a.b.home.arpa", None));
        assert!(permitted_dns("localhost", None));
        assert!(permitted_dns("pi", Some("pi")));
        assert!(!permitted_dns("pi", None));
        assert!(!permitted_dns("notlocal", None));
        assert!(!permitted_dns("example.com", Some("pi")));
    }

    #[test]
    fn der_lengths() {
        assert_eq!(der(0x04, &[1, 2]), [0x04, 2, 1, 2]);
        let long = der(0x30, &[0; 300]);
        assert_eq!(long[..4], [0x30, 0x82, 0x01, 0x2c]);
        assert_eq!(long.len(), 304);
    }
}
