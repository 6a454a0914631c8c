//! A mesh certificate authority for the mTLS suites: a CA and the
//! certificates it issues, as PEM files in a temporary directory, in the
//! shape cert-manager writes them (`tls.crt`, `tls.key`, `ca.crt`).
//!
//! A service certificate names its peer identity the way Warble reads it:
//! the URI SAN `spiffe://warble/<name>`. It is valid for `localhost` and
//! `127.0.0.1`, where the tests' servers listen, and for client and server
//! authentication both, as every mesh service is both.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A certificate authority and the directory its files live in (removed on drop).
pub struct MeshPki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

/// One issued certificate's files.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The certificate (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key_file: PathBuf,
    /// The CA certificate that signed it (PEM), for the other side to trust.
    pub ca_file: PathBuf,
}

impl MeshPki {
    /// A new CA named `common_name`, with its certificate written to `ca.crt`.
    pub fn new(common_name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "warble-pki-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a directory for the test CA");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().expect("a CA key");
        let cert = params.self_signed(&key).expect("the CA certificate");
        std::fs::write(dir.join("ca.crt"), cert.pem()).expect("write ca.crt");
        Self {
            dir,
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate's file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The directory holding every file.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Issues the certificate of mesh peer `name` (URI SAN
    /// `spiffe://warble/<name>`), written under `<dir>/<name>/`.
    pub fn issue(&self, name: &str) -> IssuedCert {
        self.issue_with_sans(
            name,
            vec![
                SanType::DnsName("localhost".try_into().expect("a DNS name")),
                SanType::IpAddress([127, 0, 0, 1].into()),
                SanType::URI(
                    format!("spiffe://warble/{name}")
                        .try_into()
                        .expect("an IA5 URI"),
                ),
            ],
        )
    }

    /// Issues a certificate that names no mesh identity (no spiffe:// URI),
    /// as a certificate for some other purpose signed by the same CA would.
    pub fn issue_without_identity(&self, file_name: &str) -> IssuedCert {
        self.issue_with_sans(
            file_name,
            vec![
                SanType::DnsName("localhost".try_into().expect("a DNS name")),
                SanType::IpAddress([127, 0, 0, 1].into()),
            ],
        )
    }

    fn issue_with_sans(&self, file_name: &str, sans: Vec<SanType>) -> IssuedCert {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("parameters");
        params.subject_alt_names = sans;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, file_name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("a key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("a signed certificate");
        let dir = self.dir.join(file_name);
        std::fs::create_dir_all(&dir).expect("a directory for the certificate");
        std::fs::write(dir.join("tls.crt"), cert.pem()).expect("write tls.crt");
        std::fs::write(dir.join("tls.key"), key.serialize_pem()).expect("write tls.key");
        IssuedCert {
            cert_file: dir.join("tls.crt"),
            key_file: dir.join("tls.key"),
            ca_file: self.ca_file(),
        }
    }
}

impl Drop for MeshPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
