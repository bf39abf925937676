//! jsonwebtoken's cryptography on ring, the crypto rustls already brings for TLS, instead
//! of jsonwebtoken's RustCrypto stack (RSA, P-256, P-384 and Ed25519 in a second set of
//! crates, about a tenth of a clean release build).
//!
//! It covers every algorithm jsonwebtoken knows: HS256/384/512, RS256/384/512,
//! PS256/384/512, ES256/384 and EdDSA (Ed25519), for signing and verifying.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair};
use ring::{digest, hmac};

/// The provider, for `CryptoProvider::install_default`.
pub(crate) static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rsa_components_from_private_key,
        rsa_pub_components_from_public_key: rsa_components_from_public_key,
        ec_pub_components_from_private_key: ec_components_from_private_key,
        ed_pub_components_from_private_key: ed_component_from_private_key,
        compute_digest,
    },
};

fn hmac_algorithm(alg: Algorithm) -> Option<hmac::Algorithm> {
    Some(match alg {
        Algorithm::HS256 => hmac::HMAC_SHA256,
        Algorithm::HS384 => hmac::HMAC_SHA384,
        Algorithm::HS512 => hmac::HMAC_SHA512,
        _ => return None,
    })
}

fn rsa_encoding(alg: Algorithm) -> Option<&'static dyn sig::RsaEncoding> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_SHA512,
        _ => return None,
    })
}

fn rsa_parameters(alg: Algorithm) -> Option<&'static sig::RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

fn ecdsa_signing(alg: Algorithm) -> Option<&'static sig::EcdsaSigningAlgorithm> {
    Some(match alg {
        Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
        Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
        _ => return None,
    })
}

fn ecdsa_verification(alg: Algorithm) -> Option<&'static sig::EcdsaVerificationAlgorithm> {
    Some(match alg {
        Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
        _ => return None,
    })
}

enum SigningKey {
    Hmac(hmac::Key),
    Rsa(sig::RsaKeyPair, &'static dyn sig::RsaEncoding),
    Ecdsa(sig::EcdsaKeyPair),
    Ed25519(sig::Ed25519KeyPair),
}

struct RingSigner {
    alg: Algorithm,
    key: SigningKey,
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let failed = |_| signature::Error::new();
        Ok(match &self.key {
            SigningKey::Hmac(key) => hmac::sign(key, msg).as_ref().to_vec(),
            SigningKey::Rsa(pair, encoding) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(*encoding, &SystemRandom::new(), msg, &mut out)
                    .map_err(failed)?;
                out
            }
            SigningKey::Ecdsa(pair) => pair
                .sign(&SystemRandom::new(), msg)
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            SigningKey::Ed25519(pair) => pair.sign(msg).as_ref().to_vec(),
        })
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    let alg = *alg;
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let bytes = key.as_bytes();
    let key = if let Some(hmac_alg) = hmac_algorithm(alg) {
        SigningKey::Hmac(hmac::Key::new(hmac_alg, bytes))
    } else if let Some(encoding) = rsa_encoding(alg) {
        // PKCS#1 DER is what jsonwebtoken's own PEM reader makes; PKCS#8 is taken too.
        let pair = sig::RsaKeyPair::from_der(bytes)
            .or_else(|_| sig::RsaKeyPair::from_pkcs8(bytes))
            .map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?;
        SigningKey::Rsa(pair, encoding)
    } else if let Some(signing) = ecdsa_signing(alg) {
        let pair = sig::EcdsaKeyPair::from_pkcs8(signing, bytes, &SystemRandom::new())
            .map_err(|_| ErrorKind::InvalidEcdsaKey)?;
        SigningKey::Ecdsa(pair)
    } else {
        // EdDSA, the one algorithm left. OpenSSL writes PKCS#8 v1 (no public key).
        let pair = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes)
            .map_err(|_| ErrorKind::InvalidEddsaKey)?;
        SigningKey::Ed25519(pair)
    };
    Ok(Box::new(RingSigner { alg, key }))
}

enum VerifyingKey {
    Hmac(hmac::Key),
    /// An RSA public key (PKCS#1 DER), an EC point or an Ed25519 key, as ring parses it.
    Public(sig::UnparsedPublicKey<Vec<u8>>),
    RsaComponents(
        &'static sig::RsaParameters,
        sig::RsaPublicKeyComponents<Vec<u8>>,
    ),
}

struct RingVerifier {
    alg: Algorithm,
    key: VerifyingKey,
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let verified = match &self.key {
            VerifyingKey::Hmac(key) => hmac::verify(key, msg, signature),
            VerifyingKey::Public(key) => key.verify(msg, signature),
            VerifyingKey::RsaComponents(params, key) => key.verify(params, msg, signature),
        };
        verified.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    let alg = *alg;
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let public = |algorithm: &'static dyn sig::VerificationAlgorithm| -> Result<VerifyingKey> {
        let bytes = key.try_get_as_bytes()?.to_vec();
        Ok(VerifyingKey::Public(sig::UnparsedPublicKey::new(
            algorithm, bytes,
        )))
    };
    let key = if let Some(hmac_alg) = hmac_algorithm(alg) {
        VerifyingKey::Hmac(hmac::Key::new(hmac_alg, key.try_get_as_bytes()?))
    } else if let Some(params) = rsa_parameters(alg) {
        match key.kind() {
            DecodingKeyKind::RsaModulusExponent { n, e } => VerifyingKey::RsaComponents(
                params,
                sig::RsaPublicKeyComponents {
                    n: n.clone(),
                    e: e.clone(),
                },
            ),
            DecodingKeyKind::SecretOrDer(_) => public(params)?,
        }
    } else if let Some(verification) = ecdsa_verification(alg) {
        public(verification)?
    } else {
        public(&sig::ED25519)?
    };
    Ok(Box::new(RingVerifier { alg, key }))
}

fn rsa_components_from_private_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let pair =
        sig::RsaKeyPair::from_der(der).map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?;
    let components = sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    Ok((components.n, components.e))
}

/// ring verifies with an RSA public key but does not take one apart; a JWK made from a
/// public key alone (never needed by Herald) gets this error instead.
fn rsa_components_from_public_key(_der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    Err(Error::from(ErrorKind::Provider(
        "the ring provider cannot take an RSA public key apart; build the JWK from the private key or from n and e"
            .into(),
    )))
}

fn ec_components_from_private_key(
    pkcs8: &[u8],
    alg: Algorithm,
) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    let (signing, curve) = match alg {
        Algorithm::ES256 => (&sig::ECDSA_P256_SHA256_FIXED_SIGNING, EllipticCurve::P256),
        Algorithm::ES384 => (&sig::ECDSA_P384_SHA384_FIXED_SIGNING, EllipticCurve::P384),
        _ => return Err(ErrorKind::InvalidEcdsaKey.into()),
    };
    let pair = sig::EcdsaKeyPair::from_pkcs8(signing, pkcs8, &SystemRandom::new())
        .map_err(|_| ErrorKind::InvalidEcdsaKey)?;
    // An uncompressed point: 0x04, then x and y of equal length.
    let point = pair.public_key().as_ref();
    match point.split_first() {
        Some((4, xy)) => {
            let (x, y) = xy.split_at(xy.len() / 2);
            Ok((curve, x.to_vec(), y.to_vec()))
        }
        _ => Err(ErrorKind::InvalidEcdsaKey.into()),
    }
}

fn ed_component_from_private_key(pkcs8: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>> {
    match curve {
        EllipticCurve::Ed25519 => Ok(sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|_| ErrorKind::InvalidEddsaKey)?
            .public_key()
            .as_ref()
            .to_vec()),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    };
    Ok(digest::digest(algorithm, data).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).unwrap()
    }

    fn public(name: &str) -> DecodingKey {
        crate::auth::public_key::from_pem(&fixture(name)).unwrap().1
    }

    /// The PKCS#8 DER of a private key fixture.
    fn pkcs8(name: &str) -> Vec<u8> {
        use rustls_pki_types::pem::PemObject;
        let pem = fixture(name);
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).unwrap();
        der.secret_pkcs8_der().to_vec()
    }

    /// Tokens signed outside Rust (openssl dgst for RS256 and ES256, Python's hmac for
    /// HS256) over `{"sub":…,"exp":4102444800}` with the test fixtures' keys.
    const OPENSSL_RS256: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJvcGVuc3NsIiwiZXhwIjo0MTAyNDQ0ODAwfQ.06DPKaxCWE7U539_hi_uWW3ALKdGcm0qojVZ0-ZD3GLkxQuc0i-bHoHD35rbzjot6NgbyDlofpnHoSr1MqB-Nno9fICtTRb6Yh2fp10n8jNibdUvJhkNBOdt71W7CTtmi0hvxgANeFgnEMnJxwoaNxitwC_egPmeuMGL5ICsFCM9Ogk6PABhmUM4fv6C9qiCQO_AOR64iKjmsCboVgcjkMXK7n8miyIat8tr5YT2Aa0vU2vMkAlQN_gaeuaFtUC9d6aQZdAbxhW8xKds7_PHzW75KIq5wkZHSt15eV_IxBsDiUBrmt2YfvfHWhmmFCKsZdAXfd549i2P12bNZzcZtQ";
    const OPENSSL_ES256: &str = "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJvcGVuc3NsIiwiZXhwIjo0MTAyNDQ0ODAwfQ.fnoqhuefTayQsHotELcyMk8_Kr8b3wfXB__01JBaypdzn2SN4ngKJ3D30631tVc2cC6BCccdt0Ln9wz_aZ_xsw";
    const PYTHON_HS256: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJweXRob24iLCJleHAiOjQxMDI0NDQ4MDB9.DUW9aTZl5Hf8fTlXoYOjVsrLL1FKUQw6Ph6iSOkC130";
    const SECRET: &[u8] = b"test-secret-of-at-least-16-bytes";

    fn split(token: &str) -> (&str, Vec<u8>) {
        let (message, signature) = token.rsplit_once('.').unwrap();
        let signature = base64_url(signature);
        (message, signature)
    }

    fn base64_url(text: &str) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bits = 0u32;
        let mut count = 0;
        let mut out = Vec::new();
        for c in text.bytes() {
            bits = bits << 6 | ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
            count += 6;
            if count >= 8 {
                count -= 8;
                out.push((bits >> count) as u8);
            }
        }
        out
    }

    fn verifies(alg: Algorithm, key: &DecodingKey, message: &str, signature: &[u8]) -> bool {
        (PROVIDER.verifier_factory)(&alg, key)
            .unwrap()
            .verify(message.as_bytes(), &signature.to_vec())
            .is_ok()
    }

    fn sign(alg: Algorithm, key: &EncodingKey, message: &str) -> Vec<u8> {
        (PROVIDER.signer_factory)(&alg, key)
            .unwrap()
            .try_sign(message.as_bytes())
            .unwrap()
    }

    #[test]
    fn tokens_signed_elsewhere_verify_and_deterministic_signatures_match() {
        let rsa_public = public("rsa_public.pem");
        let rsa_private = EncodingKey::from_rsa_der(&pkcs8("rsa_private.pem"));
        let ec_public = public("ec_public.pem");
        let hmac = DecodingKey::from_secret(SECRET);
        let (message, signature) = split(OPENSSL_RS256);
        assert!(verifies(Algorithm::RS256, &rsa_public, message, &signature));
        // PKCS#1 v1.5 and HMAC are deterministic: the same bytes as openssl and Python.
        assert_eq!(sign(Algorithm::RS256, &rsa_private, message), signature);
        let (message, signature) = split(OPENSSL_ES256);
        assert!(verifies(Algorithm::ES256, &ec_public, message, &signature));
        let (message, signature) = split(PYTHON_HS256);
        assert!(verifies(Algorithm::HS256, &hmac, message, &signature));
        let secret = EncodingKey::from_secret(SECRET);
        assert_eq!(sign(Algorithm::HS256, &secret, message), signature);
        // One flipped bit of the message fails each of them.
        for (alg, key, token) in [
            (Algorithm::RS256, &rsa_public, OPENSSL_RS256),
            (Algorithm::ES256, &ec_public, OPENSSL_ES256),
            (Algorithm::HS256, &hmac, PYTHON_HS256),
        ] {
            let (message, signature) = split(token);
            let mut tampered = message.to_string().into_bytes();
            tampered[40] ^= 1;
            let tampered = String::from_utf8(tampered).unwrap();
            assert!(!verifies(alg, key, &tampered, &signature), "{alg:?}");
        }
    }

    #[test]
    fn every_algorithm_signs_and_verifies_and_refuses_other_keys() {
        let rng = SystemRandom::new();
        let rsa = (
            EncodingKey::from_rsa_der(&pkcs8("rsa_private.pem")),
            public("rsa_public.pem"),
        );
        let hmac = (
            EncodingKey::from_secret(SECRET),
            DecodingKey::from_secret(SECRET),
        );
        let ec = |signing: &'static sig::EcdsaSigningAlgorithm| {
            let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
            let pair = sig::EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).unwrap();
            (
                EncodingKey::from_ec_der(pkcs8.as_ref()),
                DecodingKey::from_ec_der(pair.public_key().as_ref()),
            )
        };
        let p256 = ec(&sig::ECDSA_P256_SHA256_FIXED_SIGNING);
        let p384 = ec(&sig::ECDSA_P384_SHA384_FIXED_SIGNING);
        let pkcs8 = sig::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = sig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let ed = (
            EncodingKey::from_ed_der(pkcs8.as_ref()),
            DecodingKey::from_ed_der(pair.public_key().as_ref()),
        );
        let cases = [
            (Algorithm::HS256, &hmac),
            (Algorithm::HS384, &hmac),
            (Algorithm::HS512, &hmac),
            (Algorithm::RS256, &rsa),
            (Algorithm::RS384, &rsa),
            (Algorithm::RS512, &rsa),
            (Algorithm::PS256, &rsa),
            (Algorithm::PS384, &rsa),
            (Algorithm::PS512, &rsa),
            (Algorithm::ES256, &p256),
            (Algorithm::ES384, &p384),
            (Algorithm::EdDSA, &ed),
        ];
        for (alg, (private, public)) in cases {
            let signature = sign(alg, private, "header.claims");
            assert!(
                verifies(alg, public, "header.claims", &signature),
                "{alg:?}"
            );
            assert!(
                !verifies(alg, public, "header.claimz", &signature),
                "{alg:?}"
            );
        }
        // A key of another family is refused before any signature is looked at.
        assert!((PROVIDER.verifier_factory)(&Algorithm::HS256, &rsa.1).is_err());
        assert!((PROVIDER.verifier_factory)(&Algorithm::RS256, &p256.1).is_err());
        assert!((PROVIDER.signer_factory)(&Algorithm::ES256, &hmac.0).is_err());
        // ES384 with a P-256 key: the curve does not match.
        let signature = sign(Algorithm::ES256, &p256.0, "m");
        assert!(!verifies(Algorithm::ES384, &p256.1, "m", &signature));
    }
}
