//! SASL/SCRAM (RFC 5802, with SHA-256 and SHA-512 as RFC 7677 and Kafka use them): the message
//! flow of both sides, sans-IO. The client proves it knows the password without sending it; the
//! server proves it holds the user's stored keys; neither side learns anything it could replay.
//!
//! Flow (every message is UTF-8 text, carried in `SaslAuthenticate` requests, wire.proto):
//! 1. client-first `n,,n=USER,r=CNONCE` ([`ClientScram::new`]);
//! 2. server-first `r=CNONCE SNONCE,s=SALT,i=ITERATIONS` ([`ServerScram::first`]);
//! 3. client-final `c=biws,r=NONCE,p=PROOF` ([`ClientScram::final_message`]);
//! 4. server-final `v=SIGNATURE` ([`ServerScram::finish`]), which the client checks
//!    ([`ClientFinal::verify`]).
//!
//! What the server stores ([`Credential`]) is salt, iteration count, StoredKey = H(ClientKey) and
//! ServerKey, never the password nor anything that logs in by itself: the proof needs ClientKey,
//! which only the password (through PBKDF2) gives.
//!
//! Invariants: a server accepts only a proof computed from the user's ClientKey over exactly
//! the messages of this exchange (client-first-bare, server-first, client-final without proof),
//! with the nonce it issued; the iteration count is never below [`ITERATIONS_MIN`] on either
//! side (a server offering fewer could be brute-forcing cheaply what the client sends).
//! Channel binding is not supported (`n,,` gs2 header, `c=biws`), as in Kafka.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// The fewest PBKDF2 iterations accepted (RFC 7677's recommended minimum, Kafka's too).
pub const ITERATIONS_MIN: u32 = 4096;
/// The most PBKDF2 iterations a client computes for a server (a hostile server could otherwise
/// make each login cost a client seconds of CPU); Kafka's limit.
pub const ITERATIONS_MAX: u32 = 16_384;
/// Bytes of random nonce each side contributes.
pub const NONCE_BYTES: usize = 24;
/// Bytes of salt of a new credential.
pub const SALT_BYTES: usize = 16;
/// The longest SCRAM message either side accepts (a user name and nonces fit easily).
pub const MESSAGE_BYTES_MAX: usize = 4096;

/// The two SCRAM mechanisms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

impl Mechanism {
    /// The SASL name, as clients and Kafka spell it.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism of a SASL name (case-insensitive), or of the CLI's short form.
    pub fn parse(name: &str) -> Option<Mechanism> {
        match name.to_ascii_uppercase().as_str() {
            "SCRAM-SHA-256" | "SHA-256" | "256" => Some(Mechanism::Sha256),
            "SCRAM-SHA-512" | "SHA-512" | "512" => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            Mechanism::Sha512 => {
                let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    /// Hi(password, salt, i) of RFC 5802: PBKDF2 with this mechanism's HMAC.
    fn salted_password(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), salt, iterations).to_vec(),
            Mechanism::Sha512 => pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password.as_bytes(), salt, iterations).to_vec(),
        }
    }
}

/// What a server keeps of a user's password (RFC 5802 section 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub mechanism: Mechanism,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl Credential {
    /// The credential of `password` with this salt and iteration count (at least
    /// [`ITERATIONS_MIN`]).
    pub fn derive(mechanism: Mechanism, password: &str, salt: &[u8], iterations: u32) -> Credential {
        assert!(iterations >= ITERATIONS_MIN, "{iterations} PBKDF2 iterations; at least {ITERATIONS_MIN}");
        assert!(!salt.is_empty(), "a credential needs a salt");
        let salted = mechanism.salted_password(password, salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let server_key = mechanism.hmac(&salted, b"Server Key");
        Credential { mechanism, salt: salt.to_vec(), iterations, stored_key: mechanism.hash(&client_key), server_key }
    }

    /// The credential of `password` with a fresh random salt ([`crate::random`]).
    pub fn generate(mechanism: Mechanism, password: &str, iterations: u32) -> Credential {
        Credential::derive(mechanism, password, &crate::random::bytes(SALT_BYTES), iterations)
    }

    /// True when the stored fields have the shape this mechanism gives them.
    pub fn is_well_formed(&self) -> bool {
        let key_bytes = match self.mechanism {
            Mechanism::Sha256 => 32,
            Mechanism::Sha512 => 64,
        };
        self.iterations >= ITERATIONS_MIN
            && !self.salt.is_empty()
            && self.stored_key.len() == key_bytes
            && self.server_key.len() == key_bytes
    }
}

/// Why an exchange failed. The server tells a client only "authentication failed" (which of
/// user and password was wrong is not the client's business); the detail is for its log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(String),
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    #[error("wrong password (the client proof does not verify)")]
    BadProof,
    #[error("the server's nonce does not extend the client's")]
    NonceMismatch,
    #[error("the server asks for {0} iterations; accepted: {ITERATIONS_MIN}..={ITERATIONS_MAX}")]
    Iterations(u32),
    #[error("the server's signature does not verify: it does not hold this user's keys")]
    BadServerSignature,
    #[error("the server refused: {0}")]
    ServerError(String),
}

/// `,` and `=` escaped in a user name (RFC 5802 saslname).
fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

fn unescape_name(name: &str) -> Result<String, ScramError> {
    let unescaped = name.replace("=2C", ",").replace("=3D", "=");
    if name.replace("=2C", "").replace("=3D", "").contains('=') {
        return Err(ScramError::Malformed(format!("bad escape in user name {name:?}")));
    }
    Ok(unescaped)
}

/// The value of attribute `key` (`k=value`) in a comma-separated SCRAM message.
fn attribute(message: &str, key: char) -> Result<&str, ScramError> {
    message
        .split(',')
        .find_map(|part| part.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
        .ok_or_else(|| ScramError::Malformed(format!("no {key}= attribute")))
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    assert_eq!(a.len(), b.len(), "SCRAM xors keys of one length");
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// Constant-time comparison, so a wrong proof's timing says nothing of the right one.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn decode_base64(text: &str, what: &str) -> Result<Vec<u8>, ScramError> {
    BASE64.decode(text).map_err(|_| ScramError::Malformed(format!("{what} is not base64")))
}

fn check_length(message: &str) -> Result<(), ScramError> {
    if message.len() > MESSAGE_BYTES_MAX {
        return Err(ScramError::Malformed(format!("{} bytes; at most {MESSAGE_BYTES_MAX}", message.len())));
    }
    Ok(())
}

/// A random nonce of printable characters (base64 without `,`).
pub fn nonce() -> String {
    BASE64.encode(crate::random::bytes(NONCE_BYTES))
}

/// The client's side, between its first message and the server's first.
#[derive(Debug)]
pub struct ClientScram {
    mechanism: Mechanism,
    password: String,
    client_nonce: String,
    client_first_bare: String,
}

/// The client's side after its final message: what the server must sign.
#[derive(Debug)]
pub struct ClientFinal {
    expected_signature: Vec<u8>,
}

impl ClientScram {
    /// Starts an exchange; the client-first message to send.
    pub fn new(mechanism: Mechanism, user: &str, password: &str, client_nonce: &str) -> (ClientScram, String) {
        assert!(!client_nonce.is_empty() && !client_nonce.contains(','), "a nonce is printable and has no comma");
        let client_first_bare = format!("n={},r={client_nonce}", escape_name(user));
        let message = format!("n,,{client_first_bare}");
        let state = ClientScram { mechanism, password: password.to_string(), client_nonce: client_nonce.to_string(), client_first_bare };
        (state, message)
    }

    /// The client-final message answering `server_first`, and what the server must then prove.
    pub fn final_message(self, server_first: &str) -> Result<(ClientFinal, String), ScramError> {
        check_length(server_first)?;
        if let Ok(error) = attribute(server_first, 'e') {
            return Err(ScramError::ServerError(error.to_string()));
        }
        let nonce = attribute(server_first, 'r')?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = decode_base64(attribute(server_first, 's')?, "the salt")?;
        let iterations: u32 =
            attribute(server_first, 'i')?.parse().map_err(|_| ScramError::Malformed("the iteration count is not a number".into()))?;
        if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) || salt.is_empty() {
            return Err(ScramError::Iterations(iterations));
        }
        let mechanism = self.mechanism;
        let salted = mechanism.salted_password(&self.password, &salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let stored_key = mechanism.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = mechanism.hmac(&stored_key, auth_message.as_bytes());
        let proof = xor(&client_key, &client_signature);
        let server_key = mechanism.hmac(&salted, b"Server Key");
        let expected_signature = mechanism.hmac(&server_key, auth_message.as_bytes());
        let message = format!("{without_proof},p={}", BASE64.encode(proof));
        Ok((ClientFinal { expected_signature }, message))
    }
}

impl ClientFinal {
    /// Checks the server-final message: the server knew the user's ServerKey.
    pub fn verify(self, server_final: &str) -> Result<(), ScramError> {
        check_length(server_final)?;
        if let Ok(error) = attribute(server_final, 'e') {
            return Err(ScramError::ServerError(error.to_string()));
        }
        let signature = decode_base64(attribute(server_final, 'v')?, "the server signature")?;
        if !same_bytes(&signature, &self.expected_signature) {
            return Err(ScramError::BadServerSignature);
        }
        Ok(())
    }
}

/// The server's side, between its first message and the client's final one.
#[derive(Debug)]
pub struct ServerScram {
    user: String,
    credential: Credential,
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

impl ServerScram {
    /// Answers a client-first message: the user it names (its credential from `lookup`, which
    /// must be of this exchange's mechanism) and the server-first message. `server_nonce` is
    /// the server's random part.
    pub fn first(
        mechanism: Mechanism,
        client_first: &str,
        server_nonce: &str,
        lookup: impl FnOnce(&str) -> Option<Credential>,
    ) -> Result<(ServerScram, String), ScramError> {
        check_length(client_first)?;
        let Some(client_first_bare) = client_first.strip_prefix("n,,") else {
            return Err(ScramError::Malformed("only the gs2 header \"n,,\" (no channel binding, no authzid) is supported".into()));
        };
        if client_first_bare.starts_with("m=") {
            return Err(ScramError::Malformed("mandatory extensions are not supported".into()));
        }
        let user = unescape_name(attribute(client_first_bare, 'n')?)?;
        let client_nonce = attribute(client_first_bare, 'r')?;
        if client_nonce.is_empty() {
            return Err(ScramError::Malformed("an empty client nonce".into()));
        }
        let credential = lookup(&user).filter(|c| c.mechanism == mechanism).ok_or_else(|| ScramError::UnknownUser(user.clone()))?;
        assert!(credential.is_well_formed(), "a stored credential of user {user:?} is malformed");
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={}", BASE64.encode(&credential.salt), credential.iterations);
        let state =
            ServerScram { user, credential, nonce, client_first_bare: client_first_bare.to_string(), server_first: server_first.clone() };
        Ok((state, server_first))
    }

    /// The credential this exchange checks the proof against.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// Checks the client-final message: on success the authenticated user and the server-final
    /// message to send.
    pub fn finish(self, client_final: &str) -> Result<(String, String), ScramError> {
        check_length(client_final)?;
        let (without_proof, proof) =
            client_final.rsplit_once(",p=").ok_or_else(|| ScramError::Malformed("no proof in the client-final message".into()))?;
        if attribute(without_proof, 'c')? != "biws" {
            return Err(ScramError::Malformed("channel binding is not supported (expected c=biws)".into()));
        }
        if attribute(without_proof, 'r')? != self.nonce {
            return Err(ScramError::NonceMismatch);
        }
        let proof = decode_base64(proof, "the proof")?;
        let mechanism = self.credential.mechanism;
        let auth_message = format!("{},{},{without_proof}", self.client_first_bare, self.server_first);
        let client_signature = mechanism.hmac(&self.credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::BadProof);
        }
        let client_key = xor(&proof, &client_signature);
        if !same_bytes(&mechanism.hash(&client_key), &self.credential.stored_key) {
            return Err(ScramError::BadProof);
        }
        let server_signature = mechanism.hmac(&self.credential.server_key, auth_message.as_bytes());
        Ok((self.user, format!("v={}", BASE64.encode(server_signature))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677 section 3: user "user", password "pencil".
    const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_credential() -> Credential {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        Credential::derive(Mechanism::Sha256, "pencil", &salt, 4096)
    }

    #[test]
    fn the_client_side_reproduces_the_rfc_7677_exchange() {
        let (client, first) = ClientScram::new(Mechanism::Sha256, "user", "pencil", CLIENT_NONCE);
        assert_eq!(first, CLIENT_FIRST);
        let (client, last) = client.final_message(SERVER_FIRST).unwrap();
        assert_eq!(last, CLIENT_FINAL);
        client.verify(SERVER_FINAL).unwrap();
    }

    #[test]
    fn the_server_side_reproduces_the_rfc_7677_exchange() {
        let credential = rfc_credential();
        let lookup = |user: &str| (user == "user").then(|| credential.clone());
        let (server, first) = ServerScram::first(Mechanism::Sha256, CLIENT_FIRST, SERVER_NONCE, lookup).unwrap();
        assert_eq!(first, SERVER_FIRST);
        let (user, last) = server.finish(CLIENT_FINAL).unwrap();
        assert_eq!((user.as_str(), last.as_str()), ("user", SERVER_FINAL));
    }

    /// Runs a whole exchange; the server's verdict and, on success, the client's check of it.
    fn exchange(mechanism: Mechanism, stored: &Credential, user: &str, password: &str) -> Result<String, ScramError> {
        let (client, first) = ClientScram::new(mechanism, user, password, "clientnonce");
        let (server, server_first) =
            ServerScram::first(mechanism, &first, "servernonce", |name| (name == "alice").then(|| stored.clone()))?;
        let (client, last) = client.final_message(&server_first)?;
        let (authenticated, server_final) = server.finish(&last)?;
        client.verify(&server_final)?;
        Ok(authenticated)
    }

    #[test]
    fn both_mechanisms_accept_the_right_password_and_refuse_others() {
        for mechanism in [Mechanism::Sha256, Mechanism::Sha512] {
            let stored = Credential::derive(mechanism, "s3cret", b"saltsalt", ITERATIONS_MIN);
            assert!(stored.is_well_formed());
            assert_eq!(exchange(mechanism, &stored, "alice", "s3cret"), Ok("alice".to_string()));
            assert_eq!(exchange(mechanism, &stored, "alice", "s3cret!"), Err(ScramError::BadProof));
            assert_eq!(exchange(mechanism, &stored, "bob", "s3cret"), Err(ScramError::UnknownUser("bob".into())));
        }
        // A credential of the other mechanism does not serve this one.
        let stored = Credential::derive(Mechanism::Sha512, "s3cret", b"saltsalt", ITERATIONS_MIN);
        assert_eq!(exchange(Mechanism::Sha256, &stored, "alice", "s3cret"), Err(ScramError::UnknownUser("alice".into())));
    }

    #[test]
    fn a_server_without_the_keys_cannot_pass_itself_off() {
        let (client, _) = ClientScram::new(Mechanism::Sha256, "user", "pencil", CLIENT_NONCE);
        let (client, _) = client.final_message(SERVER_FIRST).unwrap();
        assert_eq!(client.verify("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), Err(ScramError::BadServerSignature));
    }

    #[test]
    fn a_replayed_or_tampered_final_message_is_refused() {
        let credential = rfc_credential();
        // Another server nonce: the recorded proof does not carry it.
        let (server, _) = ServerScram::first(Mechanism::Sha256, CLIENT_FIRST, "othernonce", |_| Some(credential.clone())).unwrap();
        assert_eq!(server.finish(CLIENT_FINAL), Err(ScramError::NonceMismatch));
        let (server, _) = ServerScram::first(Mechanism::Sha256, CLIENT_FIRST, SERVER_NONCE, |_| Some(credential.clone())).unwrap();
        let tampered = CLIENT_FINAL.replace("p=dHz", "p=dHy");
        assert_eq!(server.finish(&tampered), Err(ScramError::BadProof));
    }

    #[test]
    fn a_client_refuses_a_server_that_offers_too_few_iterations_or_its_own_nonce() {
        let (client, _) = ClientScram::new(Mechanism::Sha256, "user", "pencil", CLIENT_NONCE);
        let cheap = SERVER_FIRST.replace("i=4096", "i=1");
        assert_eq!(client.final_message(&cheap).unwrap_err(), ScramError::Iterations(1));
        let (client, _) = ClientScram::new(Mechanism::Sha256, "user", "pencil", CLIENT_NONCE);
        let echoed = format!("r={CLIENT_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        assert_eq!(client.final_message(&echoed).unwrap_err(), ScramError::NonceMismatch);
    }

    #[test]
    fn user_names_with_commas_and_equals_signs_round_trip() {
        let stored = Credential::derive(Mechanism::Sha256, "pw", b"salt", ITERATIONS_MIN);
        let (client, first) = ClientScram::new(Mechanism::Sha256, "a,b=c", "pw", "n1");
        assert_eq!(first, "n,,n=a=2Cb=3Dc,r=n1");
        let (server, server_first) =
            ServerScram::first(Mechanism::Sha256, &first, "n2", |name| (name == "a,b=c").then(|| stored.clone())).unwrap();
        let (_, last) = client.final_message(&server_first).unwrap();
        assert_eq!(server.finish(&last).unwrap().0, "a,b=c");
        assert!(unescape_name("a=2Xb").is_err());
    }
}
