//! WWW-Authenticate challenges (RFC 7235): what a registry asks for when it answers 401.

/// Header values quoted in errors are cut here: a broken server may send anything.
const MAX_QUOTED_HEADER: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: Option<String>,
    },
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    /// A scheme we do not speak (Negotiate, Digest, ...); kept so the caller can say which.
    Other {
        scheme: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ChallengeError {
    #[error("malformed WWW-Authenticate header \"{header}\": {problem} at byte {position}")]
    Malformed {
        header: String,
        problem: &'static str,
        position: usize,
    },
    #[error("WWW-Authenticate header \"{header}\" holds no challenge")]
    Empty { header: String },
    #[error("WWW-Authenticate header \"{header}\": bearer challenge has no realm")]
    BearerWithoutRealm { header: String },
    #[error("token realm \"{realm}\" is not a valid URL")]
    InvalidRealm {
        realm: String,
        #[source]
        source: url::ParseError,
    },
    #[error("token realm \"{realm}\" is not an absolute http(s) URL")]
    RealmNotHttp { realm: String },
}

/// Parses a WWW-Authenticate header value (RFC 7235 section 4.1): one or more challenges,
/// auth-params with quoted strings (with backslash escapes) or tokens, scheme names
/// case-insensitive, commas inside quotes (scope="repository:a:pull,push").
pub fn parse_challenges(header: &str) -> Result<Vec<Challenge>, ChallengeError> {
    let mut parser = ChallengeParser {
        header,
        bytes: header.as_bytes(),
        pos: 0,
    };
    let mut challenges = Vec::new();
    loop {
        // The #rule allows empty list elements: ", ,Basic" is legal.
        parser.skip_while(|b| b == b',' || is_ows(b));
        if parser.at_end() {
            break;
        }
        let scheme = parser.token("expected an auth scheme")?;
        let params = parser.challenge_params(scheme)?;
        challenges.push(parser.challenge(scheme, params)?);
    }
    if challenges.is_empty() {
        return Err(ChallengeError::Empty {
            header: quote_header(header),
        });
    }
    Ok(challenges)
}

struct ChallengeParser<'a> {
    header: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> ChallengeParser<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_while(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
    }

    fn malformed(&self, problem: &'static str) -> ChallengeError {
        ChallengeError::Malformed {
            header: quote_header(self.header),
            problem,
            position: self.pos,
        }
    }

    fn token(&mut self, problem: &'static str) -> Result<&'a str, ChallengeError> {
        let start = self.pos;
        self.skip_while(is_tchar);
        if self.pos == start {
            return Err(self.malformed(problem));
        }
        // tchars are ASCII, so both ends are char boundaries.
        Ok(&self.header[start..self.pos])
    }

    /// Whether a `token BWS "="` starts here, i.e. an auth-param rather than the next
    /// challenge's scheme. This is how "Bearer realm=x, Basic realm=y" splits: after a
    /// comma, `Basic` is followed by a space and another token, not by '='.
    fn param_follows(&self) -> bool {
        let mut i = self.pos;
        let start = i;
        while self.bytes.get(i).copied().is_some_and(is_tchar) {
            i += 1;
        }
        if i == start {
            return false;
        }
        while self.bytes.get(i).copied().is_some_and(is_ows) {
            i += 1;
        }
        self.bytes.get(i) == Some(&b'=')
    }

    /// A token68 (as in `Negotiate YII...==`) ends at the end of the header or at a comma.
    fn token68_follows(&self) -> bool {
        let mut i = self.pos;
        let start = i;
        while self
            .bytes
            .get(i)
            .is_some_and(|&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
        {
            i += 1;
        }
        if i == start {
            return false;
        }
        while self.bytes.get(i) == Some(&b'=') {
            i += 1;
        }
        while self.bytes.get(i).copied().is_some_and(is_ows) {
            i += 1;
        }
        matches!(self.bytes.get(i), None | Some(b','))
    }

    /// The auth-params after a scheme, stopping before the comma that starts the next
    /// challenge.
    fn challenge_params(&mut self, scheme: &str) -> Result<Vec<(&'a str, String)>, ChallengeError> {
        let mut params = Vec::new();
        match self.peek() {
            None | Some(b',') => return Ok(params),
            Some(b' ') => {}
            Some(_) => return Err(self.malformed("expected a space after the auth scheme")),
        }
        self.skip_while(|b| b == b' ');
        if self.at_end() || self.peek() == Some(b',') {
            return Ok(params);
        }
        // Basic and Bearer challenges carry parameters (RFC 7617, RFC 6750), so `realm=` there
        // is a parameter missing its value. Another scheme's `YIIab==` is a token68, not a
        // parameter `YIIab` missing its value.
        let params_first = ["basic", "bearer"]
            .iter()
            .any(|s| scheme.eq_ignore_ascii_case(s));
        if self.token68_follows() && !(params_first && self.param_follows()) {
            // A token68 credential blob: no parameter we use, so it is skipped.
            self.skip_while(|b| b != b',');
            return Ok(params);
        }
        loop {
            let name = self.token("expected a parameter name")?;
            self.skip_while(is_ows);
            if self.peek() != Some(b'=') {
                return Err(self.malformed("expected '=' after a parameter name"));
            }
            self.pos += 1;
            self.skip_while(is_ows);
            let value = if self.peek() == Some(b'"') {
                self.quoted_string()?
            } else {
                self.token("expected a token or quoted string as parameter value")?
                    .to_owned()
            };
            params.push((name, value));
            self.skip_while(is_ows);
            if self.at_end() {
                return Ok(params);
            }
            if self.peek() != Some(b',') {
                return Err(self.malformed("expected ',' after a parameter value"));
            }
            // Look past the comma(s): another parameter, or the next challenge?
            let comma = self.pos;
            self.skip_while(|b| b == b',' || is_ows(b));
            if !self.param_follows() {
                self.pos = comma;
                return Ok(params);
            }
        }
    }

    fn quoted_string(&mut self) -> Result<String, ChallengeError> {
        let open = self.pos;
        self.pos += 1;
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => {
                    self.pos = open;
                    return Err(self.malformed("unterminated quoted string"));
                }
                Some(b'"') => {
                    self.pos += 1;
                    // Only ASCII backslashes were dropped from a &str, so this is UTF-8;
                    // lossy conversion just avoids a panic path.
                    return Ok(String::from_utf8_lossy(&value).into_owned());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b) if b == b'\t' || (b >= 0x20 && b != 0x7f) => {
                            value.push(b);
                            self.pos += 1;
                        }
                        _ => return Err(self.malformed("invalid escape in quoted string")),
                    }
                }
                Some(b) if b == b'\t' || (b >= 0x20 && b != 0x7f) => {
                    value.push(b);
                    self.pos += 1;
                }
                Some(_) => return Err(self.malformed("control character in quoted string")),
            }
        }
    }

    fn challenge(
        &self,
        scheme: &str,
        params: Vec<(&str, String)>,
    ) -> Result<Challenge, ChallengeError> {
        // Parameter names are case-insensitive; a repeated one is a server bug, first wins.
        let param = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.clone())
        };
        if scheme.eq_ignore_ascii_case("basic") {
            Ok(Challenge::Basic {
                realm: param("realm"),
            })
        } else if scheme.eq_ignore_ascii_case("bearer") {
            let realm = param("realm").ok_or_else(|| ChallengeError::BearerWithoutRealm {
                header: quote_header(self.header),
            })?;
            Ok(Challenge::Bearer {
                realm,
                service: param("service"),
                scope: param("scope"),
            })
        } else {
            Ok(Challenge::Other {
                scheme: scheme.to_owned(),
            })
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub(super) fn quote_header(header: &str) -> String {
    match header.char_indices().nth(MAX_QUOTED_HEADER) {
        Some((cut, _)) => format!("{}...", &header[..cut]),
        None => header.to_owned(),
    }
}

#[cfg(test)]
#[path = "challenge_tests.rs"]
mod tests;
