//! One request to the test token server: parsed by hand (a GET query or a POST form, basic
//! auth), authenticated, and answered in the dialect the server is set to.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::bail;
use base64::Engine as _;

use super::{jwt, Answer, Post, Shared, TokenRequest, SERVICE};

pub(super) fn handle(shared: &Shared, mut conn: TcpStream) -> anyhow::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            bail!("request head too large");
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(()); // e.g. the wake-up connect from Drop
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |n: &str| headers.iter().find(|(h, _)| h == n).map(|(_, v)| v.clone());
    let content_length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < content_length.min(1024 * 1024) {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }

    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
    if path != "/token" {
        return respond(&mut conn, 404, &[], br#"{"error":"not found"}"#);
    }
    shared.count.fetch_add(1, Ordering::SeqCst);
    let mut params = parse_form(query);
    // OAuth2 (POST form): the password grant carries username/password, the refresh-token
    // grant an identity token this server issued.
    let mut user_pass: Option<(String, String)> = None;
    let mut refresh_user: Option<Option<String>> = None;
    let post = *shared
        .post
        .lock()
        .map_err(|_| anyhow::anyhow!("post lock poisoned"))?;
    if method == "POST" {
        let form = parse_form(&String::from_utf8_lossy(&body));
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if let (Some(u), Some(p)) = (get("username"), get("password")) {
            user_pass = Some((u, p));
        }
        if get("grant_type").as_deref() == Some("refresh_token") {
            let tokens = shared
                .refresh_tokens
                .lock()
                .map_err(|_| anyhow::anyhow!("refresh token lock poisoned"))?;
            refresh_user = Some(get("refresh_token").and_then(|t| tokens.get(&t).cloned()));
        }
        params.extend(form);
    }
    if let Some(auth) = header("authorization") {
        if let Some(b64) = auth
            .strip_prefix("Basic ")
            .or_else(|| auth.strip_prefix("basic "))
        {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok());
            if let Some((u, p)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                user_pass = Some((u.to_string(), p.to_string()));
            }
        }
    }
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    let service = params
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.clone());
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut record = TokenRequest {
        method: method.clone(),
        user: user_pass
            .as_ref()
            .map(|(u, _)| u.clone())
            .or_else(|| refresh_user.clone().flatten()),
        service: service.clone(),
        scopes: scopes.clone(),
        grant_type: param("grant_type").filter(|_| method == "POST"),
        client_id: param("client_id").filter(|_| method == "POST"),
        status: 0,
    };
    let result = if method == "POST" && post == Post::Refuse {
        respond(
            &mut conn,
            405,
            &[("Allow", "GET")],
            br#"{"errors":[{"code":"UNSUPPORTED","message":"POST is not supported (test)"}]}"#,
        )
        .map(|_| 405)
    } else if shared.failing.load(Ordering::SeqCst) {
        respond(
            &mut conn,
            503,
            &[],
            br#"{"errors":[{"code":"UNAVAILABLE","message":"token service failing (test)"}]}"#,
        )
        .map(|_| 503)
    } else {
        let authenticated = match (&refresh_user, &user_pass) {
            (Some(user), _) => user.is_some(),
            (None, Some((u, p))) => shared.users.get(u).is_some_and(|want| want == p),
            (None, None) => shared.anonymous,
        };
        if !authenticated {
            respond(
                &mut conn,
                401,
                &[(
                    "WWW-Authenticate",
                    "Basic realm=\"registry-prober-test-token\"",
                )],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            )
            .map(|_| 401)
        } else {
            let user = record.user.as_deref();
            let token = jwt(shared, user, service.as_deref().unwrap_or(SERVICE), &scopes)?;
            let issued_at = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let expires_in = shared.expires_in.load(Ordering::SeqCst);
            let answer = *shared
                .answer
                .lock()
                .map_err(|_| anyhow::anyhow!("answer lock poisoned"))?;
            let body = match answer {
                Answer::Full => serde_json::json!({
                    "token": token,
                    "access_token": token,
                    "expires_in": expires_in,
                    "issued_at": issued_at,
                }),
                Answer::AccessTokenOnly => serde_json::json!({
                    "access_token": token,
                    "token_type": "Bearer",
                    "expires_in": expires_in,
                }),
                Answer::NoExpiry => serde_json::json!({"token": token}),
                Answer::NoToken => serde_json::json!({"expires_in": expires_in}),
            };
            respond(&mut conn, 200, &[], &serde_json::to_vec(&body)?).map(|_| 200)
        }
    };
    record.status = *result.as_ref().unwrap_or(&0);
    if let Ok(mut log) = shared.log.lock() {
        log.push(record);
    }
    result.map(|_| ())
}

fn respond(
    conn: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<()> {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)?;
    conn.flush()?;
    Ok(())
}

/// `a=b&c=d` with `+` and `%XX` decoding.
fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
