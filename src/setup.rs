//! The set-up page (`/` on the plain-HTTP port, `/setup` on HTTPS) filled in per request,
//! and QR codes as SVG. The page template is `www/guide.html`; this fills in the HTTPS
//! origin, the language, the CA's fingerprint and a QR code of the address a new tablet
//! opens. QR codes come from the `qrcodegen` crate; this file only draws its modules.
//!
//! Pure functions over strings: no I/O, nothing kept between requests.

use qrcodegen::{QrCode, QrCodeEcc};
use std::fmt::Write;

/// The longest text a QR code is made for, in bytes (a kiosk URL with every setting and
/// a long key is far below it).
pub const QR_MAX_TEXT: usize = 1024;
/// Light modules around the code, as the QR standard asks.
const QUIET: i32 = 4;

/// `text` as a QR code in SVG (black on white, one path, scalable); `None` when the text
/// is empty or longer than [`QR_MAX_TEXT`].
pub fn qr_svg(text: &str) -> Option<String> {
    if text.is_empty() || text.len() > QR_MAX_TEXT {
        return None;
    }
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium).ok()?;
    let n = qr.size();
    let side = n + 2 * QUIET;
    let mut svg = String::with_capacity(200 + (n * n) as usize * 6);
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {side} {side}\" \
         width=\"{w}\" height=\"{w}\" shape-rendering=\"crispEdges\" role=\"img\">\
         <rect width=\"{side}\" height=\"{side}\" fill=\"#fff\"/><path fill=\"#000\" d=\"",
        w = side * 6
    );
    for y in 0..n {
        let mut x = 0;
        while x < n {
            if !qr.get_module(x, y) {
                x += 1;
                continue;
            }
            // One rectangle per run of dark modules in a row.
            let start = x;
            while x < n && qr.get_module(x, y) {
                x += 1;
            }
            let _ = write!(
                svg,
                "M{} {}h{}v1h-{}z",
                start + QUIET,
                y + QUIET,
                x - start,
                x - start
            );
        }
    }
    svg.push_str("\"/></svg>");
    Some(svg)
}

/// What the set-up page shows for one request.
pub struct Page<'a> {
    /// `https://host[:port]`, from a validated `Host`.
    pub https: &'a str,
    /// The address a new tablet should open first (the set-up page itself).
    pub setup_url: &'a str,
    /// The CA's SHA-256 fingerprint, as the journal shows it.
    pub fingerprint: &'a str,
    /// `ko` or `en`.
    pub lang: &'a str,
}

/// `ko` when the browser's first language is Korean, else `en`.
pub fn lang(accept_language: Option<&str>) -> &'static str {
    let first = accept_language
        .and_then(|v| v.split(',').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if first == "ko" || first.starts_with("ko-") || first.starts_with("ko;") {
        "ko"
    } else {
        "en"
    }
}

/// Fill in the template's `{https}`, `{setup}`, `{lang}`, `{fingerprint}` and `{qr}`.
/// Every value is made of characters HTML reads as text: the origin comes from a `Host`
/// that `origin::valid_host` accepted, the fingerprint is hex and colons, the QR code is
/// markup made here.
pub fn fill(template: &str, p: &Page) -> String {
    let qr = qr_svg(p.setup_url).unwrap_or_default();
    template
        .replace("{https}", p.https)
        .replace("{setup}", p.setup_url)
        .replace("{lang}", p.lang)
        .replace("{fingerprint}", p.fingerprint)
        .replace("{qr}", &qr)
}

/// The Content-Security-Policy of the set-up page: its own script and styles, the one
/// image it loads from the HTTPS origin to learn whether the certificate is trusted, and
/// (on HTTPS) the WebSocket it opens for the same reason.
pub fn csp(https: &str) -> String {
    let wss = https.replacen("https://", "wss://", 1);
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' {https}; \
         connect-src {wss}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_codes_are_bounded_svg() {
        let svg = qr_svg("https://intercom.local/").unwrap();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>"));
        // Version 2 (25 modules) plus the quiet zone.
        assert!(svg.contains("viewBox=\"0 0 33 33\""), "{svg}");
        assert_eq!(qr_svg(""), None);
        assert_eq!(qr_svg(&"a".repeat(QR_MAX_TEXT + 1)), None);
        assert!(qr_svg(&"a".repeat(QR_MAX_TEXT)).is_some());
    }

    #[test]
    fn korean_first_means_korean() {
        assert_eq!(lang(Some("ko-KR,ko;q=0.9,en;q=0.8")), "ko");
        assert_eq!(lang(Some("ko")), "ko");
        assert_eq!(lang(Some("en-US,ko;q=0.5")), "en");
        assert_eq!(lang(Some("kok")), "en");
        assert_eq!(lang(None), "en");
    }

    #[test]
    fn the_template_is_filled_in() {
        let p = Page {
            https: "https://pi.local",
            setup_url: "http://pi.local/",
            fingerprint: "AB:CD",
            lang: "ko",
        };
        let out = fill(
            "<html lang=\"{lang}\"><a href=\"{https}/\">{setup}</a>{fingerprint}{qr}",
            &p,
        );
        assert!(out.starts_with(
            "<html lang=\"ko\"><a href=\"https://pi.local/\">http://pi.local/</a>AB:CD<svg"
        ));
    }
}
