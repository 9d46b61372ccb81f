//! Certificates and the TLS acceptor.
//!
//! With `--cert`/`--key` the given PEM files are used as they are. Otherwise the server
//! keeps a local CA in the state directory (ECDSA P-256, 10 years) and a server
//! certificate signed by it (397 days, SANs for every name and address the appliance
//! answers to). Tablets trust the CA once, through `/ca.crt`. The server certificate is
//! re-issued when the name/address set changes or it is within 30 days of expiry.
//! Runs once at start, before the event loop, so its blocking file I/O stalls no one.

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509NameBuilder};
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

const CA_DAYS: u32 = 3650;
const SERVER_DAYS: u32 = 397;
const RENEW_DAYS: u32 = 30;

/// Why certificates could not be prepared.
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

impl From<native_tls::Error> for TlsError {
    fn from(e: native_tls::Error) -> Self {
        TlsError::Ssl(e.to_string())
    }
}

/// What the rest of the server gets: the acceptor and, for a local CA, its PEM.
pub struct Tls {
    pub acceptor: async_native_tls::TlsAcceptor,
    pub ca_pem: Option<Vec<u8>>,
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

fn acceptor(chain_pem: &[u8], key_pem: &[u8]) -> Result<async_native_tls::TlsAcceptor, TlsError> {
    let id = native_tls::Identity::from_pkcs8(chain_pem, key_pem)?;
    let a = native_tls::TlsAcceptor::builder(id)
        .min_protocol_version(Some(native_tls::Protocol::Tlsv12))
        .build()?;
    Ok(a.into())
}

/// Use the operator's own certificate and key.
pub fn from_files(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
    let chain = read(cert)?;
    let key_pem = read(key)?;
    // native-tls wants PKCS#8; accept the older SEC1/PKCS#1 forms too.
    let key_pem = PKey::private_key_from_pem(&key_pem)?.private_key_to_pem_pkcs8()?;
    Ok(Tls {
        acceptor: acceptor(&chain, &key_pem)?,
        ca_pem: None,
    })
}

/// The names and addresses the server certificate covers, sorted and deduplicated.
#[derive(Debug, Clone, PartialEq)]
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
    let host = hostname().unwrap_or_else(|| "intercom".into());
    let mut b = builder(&format!("intercomd local CA ({host})"), CA_DAYS, &key)?;
    b.append_extension(BasicConstraints::new().critical().ca().pathlen(0).build()?)?;
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

/// Load or create the local CA and server certificate in `dir`.
pub fn local_ca(dir: &Path, names: &Names) -> Result<Tls, TlsError> {
    fs::create_dir_all(dir).map_err(|e| TlsError::Io(dir.display().to_string(), e))?;
    let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let (srv_crt, srv_key) = (dir.join("server.crt"), dir.join("server.key"));
    let names_file = dir.join("server.names");

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

    let wanted = names.describe();
    let renew_by = Asn1Time::days_from_now(RENEW_DAYS)?;
    let current = (|| -> Option<(X509, Vec<u8>)> {
        let cert = X509::from_pem(&fs::read(&srv_crt).ok()?).ok()?;
        let key = fs::read(&srv_key).ok()?;
        let same_names = fs::read_to_string(&names_file).ok()? == wanted;
        let fresh = cert.not_after() > renew_by;
        let ours = cert.verify(&ca_pkey).unwrap_or(false);
        (same_names && fresh && ours).then_some((cert, key))
    })();
    let (server, server_key_pem) = match current {
        Some(found) => found,
        None => {
            let (cert, key) = make_server(&ca, &ca_pkey, names)?;
            let key_pem = key.private_key_to_pem_pkcs8()?;
            write(&srv_key, &key_pem, true)?;
            write(&srv_crt, &cert.to_pem()?, false)?;
            write(&names_file, wanted.as_bytes(), false)?;
            log::info!(
                "issued a server certificate for {}",
                wanted.trim().replace('\n', ", ")
            );
            (cert, key_pem)
        }
    };
    log::info!("CA fingerprint (SHA-256): {}", fingerprint(&ca));
    let ca_pem = ca.to_pem()?;
    let mut chain = server.to_pem()?;
    chain.extend_from_slice(&ca_pem);
    Ok(Tls {
        acceptor: acceptor(&chain, &server_key_pem)?,
        ca_pem: Some(ca_pem),
    })
}
