//! `auth.jwt_public_key`: a PEM "PUBLIC KEY" (SubjectPublicKeyInfo) holding an RSA key
//! (RS256) or a P-256 key (ES256), taken apart here so jsonwebtoken needs no PEM and
//! ASN.1 crates of its own. rustls-pki-types reads the PEM; the few DER fields of a
//! SubjectPublicKeyInfo are read below, every length checked.

use jsonwebtoken::{Algorithm, DecodingKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::SubjectPublicKeyInfoDer;

/// DER of the OIDs rsaEncryption, id-ecPublicKey and prime256v1 (P-256).
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;

/// The algorithm a PEM public key verifies and the key itself, or why it cannot be used.
pub(crate) fn from_pem(pem: &str) -> Result<(Algorithm, DecodingKey), String> {
    if pem.contains("-----BEGIN RSA PUBLIC KEY-----") {
        return Err(
            "an RSA PUBLIC KEY (PKCS#1) PEM is not read; give it as a PUBLIC KEY \
             (`openssl rsa -RSAPublicKey_in -in key.pem -pubout`)"
                .into(),
        );
    }
    let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("no PEM PUBLIC KEY in it ({e})"))?;
    let malformed = || "its PUBLIC KEY is not a well-formed SubjectPublicKeyInfo".to_string();
    let (spki, rest) = element(SEQUENCE, spki.as_ref()).ok_or_else(malformed)?;
    if !rest.is_empty() {
        return Err(malformed());
    }
    let (algorithm, spki) = element(SEQUENCE, spki).ok_or_else(malformed)?;
    let (bits, rest) = element(BIT_STRING, spki).ok_or_else(malformed)?;
    let (oid, parameters) = element(OID, algorithm).ok_or_else(malformed)?;
    // No unused bits: a key is whole bytes.
    let key = match bits.split_first() {
        Some((0, key)) if rest.is_empty() => key,
        _ => return Err(malformed()),
    };
    match oid {
        RSA_ENCRYPTION => {
            let bits = rsa_modulus_bits(key).ok_or_else(malformed)?;
            // What ring verifies (and RFC 7518 asks of RS256).
            if bits < 2048 {
                return Err(format!(
                    "its RSA key has {bits} bits; RS256 needs at least 2048"
                ));
            }
            Ok((Algorithm::RS256, DecodingKey::from_rsa_der(key)))
        }
        EC_PUBLIC_KEY => {
            let (curve, _) = element(OID, parameters).ok_or_else(malformed)?;
            if curve != P256 {
                return Err("its EC key is not on P-256, the curve of ES256".into());
            }
            // An uncompressed point: 0x04, then x and y of 32 bytes each.
            if key.len() != 65 || key[0] != 4 {
                return Err("its P-256 key is not an uncompressed point".into());
            }
            Ok((Algorithm::ES256, DecodingKey::from_ec_der(key)))
        }
        _ => Err("its key is neither RSA nor EC".into()),
    }
}

/// The size in bits of the modulus of a PKCS#1 RSAPublicKey (`SEQUENCE { n, e }`).
fn rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    let (key, rest) = element(SEQUENCE, der)?;
    let (n, key) = element(INTEGER, key)?;
    let (e, key) = element(INTEGER, key)?;
    if !rest.is_empty() || !key.is_empty() || e.is_empty() {
        return None;
    }
    // A positive INTEGER may start with one zero byte.
    let n = n.strip_prefix(&[0]).unwrap_or(n);
    let first = *n.first()?;
    Some(n.len() * 8 - first.leading_zeros() as usize)
}

/// One DER element with this tag at the start of `der`: its contents and what follows.
fn element(tag: u8, der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&first, der) = der.split_first()?;
    if first != tag {
        return None;
    }
    let (&length, mut der) = der.split_first()?;
    let length = if length < 0x80 {
        usize::from(length)
    } else {
        // Long form: the next 1 to 4 bytes are the length.
        let count = usize::from(length & 0x7f);
        if count == 0 || count > 4 || der.len() < count {
            return None;
        }
        let (bytes, rest) = der.split_at(count);
        der = rest;
        bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    (der.len() >= length).then(|| der.split_at(length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).unwrap()
    }

    const P384: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAELUTLgxZgjN+4/HIfZIdukvYWLW8TuTZE
vVgBEiQFe4ZHIWUGuxiu87yfYAx+1TNb/Y5/YAkVnQEDvkpeX7P2A+ZReRFXhRKp
FEIQmjYTa9V00IH/6xUml4uoew5LXqcZ
-----END PUBLIC KEY-----";
    const RSA_1024: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC8liONs2PDntu60EvxAoB1JXqw
TczfSaH7K7Dgp37yu8Mok8TmsDnPsxwuYHusBPhKdbIM+yvj9oTDHs9EOeSoFU2t
z4K+uGCZ+0I1UHq6nXDLqgaBnyUhahsngkj5QCC9pwzuAVDNAU+hLBTIOW7YXyxY
AiOejqk9JF+jiHkT/QIDAQAB
-----END PUBLIC KEY-----";

    #[test]
    fn rsa_and_p256_public_keys_are_read() {
        let (alg, _) = from_pem(&fixture("rsa_public.pem")).unwrap();
        assert_eq!(alg, Algorithm::RS256);
        let (alg, _) = from_pem(&fixture("ec_public.pem")).unwrap();
        assert_eq!(alg, Algorithm::ES256);
    }

    #[test]
    fn other_keys_and_broken_input_get_a_reason() {
        let reason = |pem: &str| from_pem(pem).map(|(alg, _)| alg).unwrap_err();
        assert!(reason(P384).contains("P-256"), "{}", reason(P384));
        assert!(
            reason(RSA_1024).contains("1024 bits"),
            "{}",
            reason(RSA_1024)
        );
        assert!(reason("").contains("no PEM PUBLIC KEY"));
        // A private key given by mistake.
        assert!(reason(&fixture("rsa_private.pem")).contains("no PEM PUBLIC KEY"));
        assert!(
            reason("-----BEGIN RSA PUBLIC KEY-----\nMAA=\n-----END RSA PUBLIC KEY-----\n")
                .contains("PKCS#1")
        );
        // Every truncation of a real key's DER is refused, never a panic.
        let pem = fixture("rsa_public.pem");
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()).unwrap();
        for end in 0..der.as_ref().len() {
            assert!(
                from_pem(&to_pem(&der.as_ref()[..end])).is_err(),
                "{end} bytes"
            );
        }
    }

    fn to_pem(der: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut text = String::new();
        for chunk in der.chunks(3) {
            let bytes = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = u32::from(bytes[0]) << 16 | u32::from(bytes[1]) << 8 | u32::from(bytes[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    text.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    text.push('=');
                }
            }
        }
        format!("-----BEGIN PUBLIC KEY-----\n{text}\n-----END PUBLIC KEY-----\n")
    }
}
