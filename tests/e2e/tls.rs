//! MQTT over TLS: our own listener in front of the broker, with a test CA
//! made here (rcgen), handshake isolation and certificate reloads.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, RootCertStore, pki_types::CertificateDer};

use crate::support::{PATIENCE, TestServer, free_port, start_secure};

const SECRET: &str = "tls-gw-secret-3c2b1a0f9e8d7c6b";

const ROSTER: &str = r#"
[[residents]]
id = "r-1"
name = "TLS Resident"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"

[[devices]]
id = "gw-1"
resident = "r-1"
kind = "gateway"
secret_env = "TEST_SECRET_GW_1"
"#;

/// A fresh CA and a server certificate for `localhost` signed by it,
/// written to `dir`; returns the CA certificate for clients to trust.
fn issue(dir: &Path) -> CertificateDer<'static> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Ondol test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    // Written next to each other, then renamed, so a reload never sees a
    // half-written pair.
    std::fs::write(dir.join("server.crt.new"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key.new"), server_key.serialize_pem()).unwrap();
    std::fs::rename(dir.join("server.key.new"), dir.join("server.key")).unwrap();
    std::fs::rename(dir.join("server.crt.new"), dir.join("server.crt")).unwrap();
    ca.der().clone()
}

fn connector(ca: &CertificateDer<'static>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// An MQTT 3.1.1 CONNECT with username and password, clean session.
fn connect_packet(client_id: &str, username: &str, password: &str) -> Vec<u8> {
    let field = |s: &str| {
        let mut out = (s.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(s.as_bytes());
        out
    };
    let mut body = field("MQTT");
    body.extend_from_slice(&[4, 0b1100_0010, 0, 30]);
    body.extend(field(client_id));
    body.extend(field(username));
    body.extend(field(password));
    let mut packet = vec![0x10];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if len == 0 {
            break;
        }
    }
    packet.extend(body);
    packet
}

/// TLS handshake, CONNECT, and whether a successful CONNACK came back
/// (`false` when the broker closed the connection instead).
async fn mqtt_over_tls(port: u16, ca: &CertificateDer<'static>, password: &str) -> bool {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio::time::timeout(PATIENCE, connector(ca).connect(name, tcp))
        .await
        .expect("the TLS handshake finished in time")
        .expect("the TLS handshake succeeded");
    tls.write_all(&connect_packet("gw-1", "gw-1", password))
        .await
        .unwrap();
    let mut connack = [0u8; 4];
    match tokio::time::timeout(PATIENCE, tls.read_exact(&mut connack))
        .await
        .expect("an answer in time")
    {
        Ok(_) => connack == [0x20, 2, 0, 0],
        Err(_) => false,
    }
}

/// Whether process `pid` holds a listening TCP socket on `port` (Linux:
/// its socket inodes in /proc/PID/fd, matched against /proc/net/tcp{,6}).
fn listens_on(pid: u32, port: u16) -> bool {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the server's descriptors")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| text.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|local| local.rsplit_once(':'))
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            // State 0A is LISTEN; field 9 is the socket's inode.
            local_port == Some(port)
                && fields.get(3) == Some(&"0A")
                && fields.get(9).is_some_and(|inode| inodes.contains(*inode))
        })
}

async fn tls_server(dir: &Path, tls_port: u16, extra: &str) -> TestServer {
    let mqtt = format!(
        "tcp_enabled = false\n[mqtt.tls]\nenabled = true\nlisten = \"127.0.0.1:{tls_port}\"\ncert_file = {:?}\nkey_file = {:?}\n{extra}",
        dir.join("server.crt"),
        dir.join("server.key"),
    );
    start_secure(ROSTER, &mqtt, "", &[("TEST_SECRET_GW_1", SECRET)]).await
}

#[tokio::test]
async fn devices_connect_over_tls_and_an_idle_client_blocks_no_one() {
    let pki = tempfile::tempdir().unwrap();
    let ca = issue(pki.path());
    let tls_port = free_port();
    // A handshake timeout far beyond the test's patience: if handshakes
    // were serial, the idle connection below would hold up the next client
    // until the test fails.
    let server = tls_server(pki.path(), tls_port, "handshake_timeout = \"10m\"\n").await;

    let _idle = TcpStream::connect(("127.0.0.1", tls_port)).await.unwrap();
    let mut half = TcpStream::connect(("127.0.0.1", tls_port)).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01]).await.unwrap();

    assert!(mqtt_over_tls(tls_port, &ca, SECRET).await);
    assert!(!mqtt_over_tls(tls_port, &ca, "not-the-secret-77").await);
    // Plain TCP is off: the server listens on the TLS port only, not on
    // mqtt.listen. Asked of the server's own sockets: a connect to that
    // port could reach another test's server that happened to take it.
    assert!(
        listens_on(server.pid(), tls_port),
        "the check sees the TLS listener"
    );
    assert!(!listens_on(server.pid(), server.mqtt_port));
    // A client that does not trust the server's CA gets no session.
    let other_ca = issue(tempfile::tempdir().unwrap().path());
    let tcp = TcpStream::connect(("127.0.0.1", tls_port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    assert!(connector(&other_ca).connect(name, tcp).await.is_err());
}

#[tokio::test]
async fn certificates_reload_on_sighup_and_on_file_change() {
    // SIGHUP: the file check is too slow to be what reloads it.
    let pki = tempfile::tempdir().unwrap();
    let first = issue(pki.path());
    let port = free_port();
    let server = tls_server(pki.path(), port, "reload_check_interval = \"1h\"\n").await;
    assert!(mqtt_over_tls(port, &first, SECRET).await);
    let second = issue(pki.path());
    let pid = server.pid();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    crate::support::eventually("the certificate reloaded on SIGHUP", || {
        server
            .log()
            .contains("TLS certificate reloaded")
            .then_some(())
    })
    .await;
    assert!(mqtt_over_tls(port, &second, SECRET).await);

    // File change: no signal.
    let pki = tempfile::tempdir().unwrap();
    let first = issue(pki.path());
    let port = free_port();
    let server = tls_server(pki.path(), port, "reload_check_interval = \"100ms\"\n").await;
    assert!(mqtt_over_tls(port, &first, SECRET).await);
    let second = issue(pki.path());
    crate::support::eventually("the certificate reloaded on file change", || {
        server
            .log()
            .contains("TLS certificate files changed; reloaded")
            .then_some(())
    })
    .await;
    assert!(mqtt_over_tls(port, &second, SECRET).await);
}
