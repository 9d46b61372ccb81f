//! The local CA as an Apple configuration profile (`/intercom.mobileconfig`): iOS and
//! iPadOS offer to install a profile where a bare `.crt` is sometimes only saved as a
//! file. Pure: bytes in, XML plist out. Never reads files or touches the network.
//!
//! The profile holds one `com.apple.security.root` payload. Its UUIDs come from the CA's
//! SHA-256, so the same CA always yields the same profile, and a renewed CA replaces the
//! old profile's identity instead of piling up copies.

use openssl::sha::sha256;

/// The media type iOS opens as a profile.
pub const CONTENT_TYPE: &str = "application/x-apple-aspen-config";

/// The reverse-DNS prefix of both payload identifiers.
const IDENTIFIER: &str = "local.intercomd.ca";

/// The configuration profile installing `ca_der` (a DER certificate) as a trusted root,
/// named after `host` (the appliance as the tablet reached it).
pub fn profile(ca_der: &[u8], host: &str) -> Vec<u8> {
    let digest = sha256(ca_der);
    let outer = uuid(&digest, 0);
    let inner = uuid(&digest, 1);
    let name = escape(&format!("Intercom ({host})"));
    let ca_name = escape(&format!("Intercom certificate ({host})"));
    let data = openssl::base64::encode_block(ca_der);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
<plist version=\"1.0\">\n\
<dict>\n\
\t<key>PayloadContent</key>\n\
\t<array>\n\
\t\t<dict>\n\
\t\t\t<key>PayloadCertificateFileName</key>\n\
\t\t\t<string>intercom-ca.cer</string>\n\
\t\t\t<key>PayloadContent</key>\n\
\t\t\t<data>{data}</data>\n\
\t\t\t<key>PayloadDescription</key>\n\
\t\t\t<string>Trusts the intercom's own certificate authority.</string>\n\
\t\t\t<key>PayloadDisplayName</key>\n\
\t\t\t<string>{ca_name}</string>\n\
\t\t\t<key>PayloadIdentifier</key>\n\
\t\t\t<string>{IDENTIFIER}.root.{inner}</string>\n\
\t\t\t<key>PayloadType</key>\n\
\t\t\t<string>com.apple.security.root</string>\n\
\t\t\t<key>PayloadUUID</key>\n\
\t\t\t<string>{inner}</string>\n\
\t\t\t<key>PayloadVersion</key>\n\
\t\t\t<integer>1</integer>\n\
\t\t</dict>\n\
\t</array>\n\
\t<key>PayloadDescription</key>\n\
\t<string>Lets this tablet open the intercom on your network over HTTPS.</string>\n\
\t<key>PayloadDisplayName</key>\n\
\t<string>{name}</string>\n\
\t<key>PayloadIdentifier</key>\n\
\t<string>{IDENTIFIER}.{outer}</string>\n\
\t<key>PayloadRemovalDisallowed</key>\n\
\t<false/>\n\
\t<key>PayloadType</key>\n\
\t<string>Configuration</string>\n\
\t<key>PayloadUUID</key>\n\
\t<string>{outer}</string>\n\
\t<key>PayloadVersion</key>\n\
\t<integer>1</integer>\n\
</dict>\n\
</plist>\n"
    )
    .into_bytes()
}

/// An RFC 4122 version-4-shaped UUID from 16 bytes of `digest` at `which` (0 or 1), so
/// the profile and its payload get different, stable identities.
fn uuid(digest: &[u8; 32], which: usize) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[which * 16..which * 16 + 16]);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4 (random-looking, not time-based)
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Text for an XML element: the five characters XML gives meaning to, escaped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(der: &[u8], host: &str) -> String {
        String::from_utf8(profile(der, host)).unwrap()
    }

    /// The string value that follows `<key>k</key>` at its `nth` occurrence.
    fn value_after(xml: &str, key: &str, nth: usize) -> String {
        let tag = format!("<key>{key}</key>");
        let at = xml.match_indices(&tag).nth(nth).unwrap().0 + tag.len();
        let rest = xml[at..].trim_start();
        let open_end = rest.find('>').unwrap() + 1;
        let close = rest.find("</").unwrap();
        rest[open_end..close].to_string()
    }

    #[test]
    fn top_level_keys_ios_requires() {
        let xml = text(b"\x30\x03\x02\x01\x01", "intercom.local");
        // The nested dict comes first, so the outer keys are the last occurrences.
        assert_eq!(xml.matches("<key>PayloadType</key>").count(), 2);
        assert_eq!(value_after(&xml, "PayloadType", 1), "Configuration");
        assert_eq!(value_after(&xml, "PayloadVersion", 1), "1");
        assert_eq!(
            value_after(&xml, "PayloadDisplayName", 1),
            "Intercom (intercom.local)"
        );
        let id = value_after(&xml, "PayloadIdentifier", 1);
        assert!(id.starts_with("local.intercomd.ca."), "{id}");
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist"));
        assert!(xml.trim_end().ends_with("</plist>"));
    }

    #[test]
    fn one_root_payload_holding_the_ca() {
        let der: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        let xml = text(&der, "10.0.0.2");
        assert_eq!(
            value_after(&xml, "PayloadType", 0),
            "com.apple.security.root"
        );
        assert_eq!(value_after(&xml, "PayloadVersion", 0), "1");
        let data = value_after(&xml, "PayloadContent", 1);
        let decoded = openssl::base64::decode_block(&data.replace(['\n', '\r'], "")).unwrap();
        assert_eq!(decoded, der);
        assert_eq!(xml.matches("<data>").count(), 1);
    }

    #[test]
    fn uuids_are_rfc4122_stable_and_distinct() {
        let a = text(b"ca one", "h");
        let b = text(b"ca one", "h");
        let c = text(b"ca two", "h");
        assert_eq!(a, b, "the same CA gives the same profile");
        let outer = value_after(&a, "PayloadUUID", 1);
        let inner = value_after(&a, "PayloadUUID", 0);
        assert_ne!(outer, inner);
        assert_ne!(outer, value_after(&c, "PayloadUUID", 1));
        for u in [&outer, &inner] {
            let parts: Vec<&str> = u.split('-').collect();
            let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
            assert_eq!(lens, [8, 4, 4, 4, 12], "{u}");
            assert!(u.chars().all(|c| c == '-' || c.is_ascii_hexdigit()), "{u}");
            assert_eq!(&parts[2][..1], "4", "version 4: {u}");
            assert!("89AB".contains(&parts[3][..1]), "variant: {u}");
        }
    }

    #[test]
    fn host_is_escaped() {
        let xml = text(b"x", "a<b>&\"c'");
        assert!(xml.contains("Intercom (a&lt;b&gt;&amp;&quot;c&apos;)"));
        assert!(!xml.contains("a<b>"));
    }
}
