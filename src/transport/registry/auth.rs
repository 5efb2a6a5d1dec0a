//! Registry authentication, the client's side: a request sent with the credentials its
//! scopes need, Basic or a bearer token from the registry's token service, cached per
//! scope and renewed before it expires; one challenge answered ([`super::challenge`]).

use crate::control::Locked;
use std::time::{Duration, Instant};

use reqwest::blocking::{Request, RequestBuilder, Response};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{StatusCode, Url};

use crate::transport::TransportError;

use super::challenge::{parse_challenge, Challenge};
use super::client::{Call, Client};
use super::retry::Attempt;

impl Client {
    /// Sends a request with the credentials its scopes need, answering one authentication
    /// challenge. `build` is called again for the second request.
    pub(super) fn send(
        &self,
        call: &Call,
        scopes: &[String],
        build: &mut dyn FnMut() -> Result<RequestBuilder, Attempt>,
    ) -> Result<Response, Attempt> {
        let mut challenged = false;
        loop {
            let request = build()?.build().map_err(|e| self.request_failure(e))?;
            let request = self.authorize(call, request, scopes)?;
            let sent_credentials = request.headers().contains_key(AUTHORIZATION);
            let response = self.execute(call, request)?;
            if response.status() == StatusCode::UNAUTHORIZED && !challenged {
                if let Some(challenge) = parse_challenge(response.headers()) {
                    challenged = true;
                    let bearer = matches!(challenge, Challenge::Bearer { .. });
                    let mut state = self.auth.locked();
                    // A token that was refused is not asked for again from the cache.
                    state.tokens.remove(&scopes.join(" "));
                    state.challenge = Some(challenge);
                    drop(state);
                    // Once more with what the challenge asks: credentials this request went
                    // without (other requests may have learned the challenge meanwhile), or a
                    // fresh token.
                    if bearer || (!sent_credentials && self.creds.is_some()) {
                        continue;
                    }
                }
            }
            return Ok(response);
        }
    }

    /// The request with the credentials at hand (Basic, or a cached token that is still
    /// valid), asking nobody: `None` when a token would have to be fetched first.
    pub(super) fn cached_authorization(
        &self,
        mut request: Request,
        scopes: &[String],
    ) -> Option<Request> {
        use base64::Engine;
        if request.url().origin() != self.base.origin() {
            return Some(request);
        }
        let state = self.auth.locked();
        let value = match &state.challenge {
            None => return Some(request),
            Some(Challenge::Basic) => {
                let c = self.creds.as_ref()?;
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{}:{}", c.username, c.password))
                )
            }
            Some(Challenge::Bearer { .. }) => {
                let (token, renew) = state.tokens.get(&scopes.join(" "))?;
                if Instant::now() >= *renew {
                    return None;
                }
                format!("Bearer {token}")
            }
        };
        let mut value = HeaderValue::from_str(&value).ok()?;
        value.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, value);
        Some(request)
    }

    /// Adds the credentials the challenge asks for, to requests for the registry itself
    /// only (an upload location on another host gets none).
    fn authorize(
        &self,
        call: &Call,
        mut request: Request,
        scopes: &[String],
    ) -> Result<Request, Attempt> {
        use base64::Engine;
        if request.url().origin() != self.base.origin() {
            return Ok(request);
        }
        let challenge = self.auth.locked().challenge.clone();
        let value = match challenge {
            None => return Ok(request),
            Some(Challenge::Basic) => match &self.creds {
                Some(c) => format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{}:{}", c.username, c.password))
                ),
                None => return Ok(request),
            },
            Some(Challenge::Bearer { realm, service }) => format!(
                "Bearer {}",
                self.token(call, &realm, service.as_deref(), scopes)?
            ),
        };
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            Attempt::Fail(TransportError::Registry {
                location: call.location.to_string(),
                message: "a token that is not a valid header value".to_string(),
            })
        })?;
        value.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, value);
        Ok(request)
    }

    /// A bearer token for `scopes`, from the cache or the token service.
    fn token(
        &self,
        call: &Call,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String, Attempt> {
        let key = scopes.join(" ");
        if let Some((t, renew)) = self.auth.locked().tokens.get(&key) {
            if Instant::now() < *renew {
                return Ok(t.clone());
            }
        }
        let invalid = |message: String| {
            Attempt::Fail(TransportError::Registry {
                location: call.location.to_string(),
                message,
            })
        };
        let realm_url = Url::parse(realm).map_err(|e| {
            invalid(format!(
                "its token service `{realm}` is not a valid URL: {e}"
            ))
        })?;
        let mut url = realm_url.clone();
        {
            let mut query = url.query_pairs_mut();
            if let Some(s) = service {
                query.append_pair("service", s);
            }
            for scope in scopes {
                query.append_pair("scope", scope);
            }
        }
        if self.creds.is_some() && self.tls_required && realm_url.scheme() != "https" {
            return Err(Attempt::Fail(TransportError::Insecure {
                registry: self.registry.clone(),
                realm: realm.to_string(),
            }));
        }
        let request = match &self.creds {
            // An identity token is exchanged with the OAuth2 form (a POST).
            Some(c) if c.is_identity_token() => {
                let mut form = Url::parse("unroot:form").expect("a valid URL");
                form.query_pairs_mut()
                    .append_pair("grant_type", "refresh_token")
                    .append_pair("service", service.unwrap_or_default())
                    .append_pair("scope", &scopes.join(" "))
                    .append_pair("client_id", "unroot")
                    .append_pair("refresh_token", &c.password);
                self.http
                    .post(realm_url)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form.query().unwrap_or_default().to_string())
            }
            Some(c) => self
                .http
                .get(url)
                .basic_auth(&c.username, Some(&c.password)),
            None => self.http.get(url),
        };
        let request = request.build().map_err(|e| self.request_failure(e))?;
        let response = self.execute(call, request)?;
        let response = self.check_transient(call, "its token service", response)?;
        if matches!(response.status().as_u16(), 401 | 403) {
            return Err(Attempt::Fail(self.unauthorized(call)));
        }
        if !response.status().is_success() {
            return Err(Attempt::Fail(self.status_error(
                call,
                "its token service",
                response,
            )));
        }
        let body = self.read_body(call, response, 1024 * 1024)?;
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let token = parsed["token"]
            .as_str()
            .or_else(|| parsed["access_token"].as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                invalid(format!(
                    "its token service `{realm}` answered without a token"
                ))
            })?
            .to_string();
        crate::control::secrets::register(&token);
        // Tokens live `expires_in` seconds (60 when not said, as the token spec has it);
        // they are renewed a little before, so a long upload never starts with a stale one.
        let lifetime = parsed["expires_in"].as_u64().unwrap_or(60).max(10);
        let renew = Instant::now() + Duration::from_secs(lifetime - lifetime / 6);
        self.auth
            .locked()
            .tokens
            .insert(key, (token.clone(), renew));
        Ok(token)
    }
}
