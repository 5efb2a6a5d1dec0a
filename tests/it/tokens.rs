//! A token server for the registry's bearer-token authentication, in the tests' process.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::self_signed;

/// A token server for the registry's bearer-token authentication (the Docker token
/// protocol): it checks HTTP basic credentials and answers with a JWT signed by a key made
/// with `openssl` for this test, which the registry trusts.
pub struct TokenServer {
    pub realm: String,
    pub cert: PathBuf,
    _dir: tempfile::TempDir,
}

/// The token service name and issuer the registry is configured with.
pub const TOKEN_SERVICE: &str = "unroot-test-registry";
pub const TOKEN_ISSUER: &str = "unroot-test-issuer";

impl TokenServer {
    pub fn start(user: &str, password: &str) -> TokenServer {
        use base64::Engine;
        let dir = tempfile::Builder::new()
            .prefix("unroot-token-")
            .tempdir()
            .expect("temp dir");
        let (cert, key) = self_signed(dir.path(), "unroot-test-token", &[]);
        let der = Command::new("openssl")
            .args(["x509", "-in", cert.to_str().unwrap(), "-outform", "DER"])
            .output()
            .expect("openssl runs")
            .stdout;
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);
        let listener = TcpListener::bind("127.0.0.1:0").expect("free port");
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        // An identity token (OAuth2 refresh token, as `docker login` stores for some
        // registries) is accepted when it is the password.
        let refresh = password.to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer_token_request(stream, &expected, &refresh, &x5c, &key);
            }
        });
        TokenServer {
            realm,
            cert,
            _dir: dir,
        }
    }
}

fn answer_token_request(
    mut stream: TcpStream,
    expected_auth: &str,
    expected_refresh: &str,
    x5c: &str,
    key: &Path,
) -> std::io::Result<()> {
    use base64::Engine;
    use std::io::{BufRead, Read};
    let mut reader = std::io::BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorized = false;
    let mut length = 0u64;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") && value.trim() == expected_auth {
                authorized = true;
            }
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    // The OAuth2 form: a POST with grant_type=refresh_token, the scopes in its body.
    let mut form = String::new();
    if request_line.starts_with("POST ") {
        (&mut reader).take(length).read_to_string(&mut form)?;
        let fields: Vec<&str> = form.split('&').collect();
        authorized = fields.contains(&"grant_type=refresh_token")
            && fields.contains(&format!("refresh_token={expected_refresh}").as_str());
    }
    if !authorized {
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
        return write!(stream, "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    }
    // Grant what was asked: every `scope=repository:NAME:ACTIONS` parameter.
    let target = request_line.split_whitespace().nth(1).unwrap_or_default();
    let query = if form.is_empty() {
        target.split_once('?').map(|(_, q)| q).unwrap_or_default()
    } else {
        form.as_str()
    };
    let mut access = Vec::new();
    for pair in query.split('&') {
        if let Some(scope) = pair.strip_prefix("scope=") {
            let scope = scope
                .replace("%3A", ":")
                .replace("%2C", ",")
                .replace("%2F", "/")
                .replace("%20", " ")
                .replace('+', " ");
            for one in scope.split(' ') {
                let parts: Vec<&str> = one.splitn(3, ':').collect();
                if parts.len() == 3 {
                    access.push(serde_json::json!({"type": parts[0], "name": parts[1], "actions": parts[2].split(',').collect::<Vec<_>>()}));
                }
            }
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER, "sub": "test", "aud": TOKEN_SERVICE,
        "exp": now + 600, "nbf": now - 60, "iat": now - 60, "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign", key.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())?;
    let signature = child.wait_with_output()?.stdout;
    let token = format!("{signing_input}.{}", b64(&signature));
    let body =
        serde_json::json!({"token": token, "access_token": token, "expires_in": 600}).to_string();
    write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}
