//! Checkpoints as C2SP `tlog-checkpoint` bodies in C2SP `signed-note`s,
//! signed with Ed25519, and keys in the note verifier key format, so that
//! tools built for Go's sumdb/note or Sigstore check them as they are.

use base64::{Engine, engine::general_purpose::STANDARD};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;

/// The signature type byte of Ed25519 in signed-note.
const ED25519: u8 = 0x01;
/// Every signature line begins with an em dash and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// The four bytes that name a key in its signatures.
fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519]);
    h.update(public.as_bytes());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// A valid key name: no spaces, no plus signs, not empty.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// What a checkpoint says: the log, its size and its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note's text: origin, size and base64 root, each on a line.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        let origin = lines.next().filter(|o| !o.is_empty());
        let size = lines.next().and_then(|s| s.parse::<u64>().ok());
        let root = lines
            .next()
            .and_then(|r| STANDARD.decode(r).ok())
            .and_then(|r| Hash::try_from(r).ok());
        match (origin, size, root) {
            (Some(origin), Some(size), Some(root)) => Ok(Self {
                origin: origin.to_owned(),
                size,
                root,
            }),
            _ => Err("the note is not a checkpoint (origin, size, base64 root hash)".to_owned()),
        }
    }
}

/// Signs checkpoints as the log named `name` (its origin).
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    id: [u8; 4],
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    pub fn new(name: &str, seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let id = key_id(name, &key.verifying_key());
        Self {
            name: name.to_owned(),
            key,
            id,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<name>+<hex key id>+<base64(0x01 || public key)>`.
    pub fn verifier_key(&self) -> String {
        let mut key = vec![ED25519];
        key.extend_from_slice(self.key.verifying_key().as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            super::hex(&self.id),
            STANDARD.encode(key)
        )
    }

    /// The signed note of `checkpoint`.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        let body = checkpoint.body();
        let signature = self.key.sign(body.as_bytes());
        let mut sig = self.id.to_vec();
        sig.extend_from_slice(&signature.to_bytes());
        format!(
            "{body}\n{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(sig)
        )
    }
}

/// Checks notes signed by one key.
#[derive(Debug, Clone)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Parses a verifier key (`<name>+<hex key id>+<base64(0x01 || key)>`).
    pub fn parse(vkey: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("not a note verifier key: {why}");
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected <name>+<key id>+<key>"));
        };
        if !valid_name(name) {
            return Err(bad("invalid name"));
        }
        let key = STANDARD
            .decode(key)
            .map_err(|_| bad("the key is not base64"))?;
        let Some((&ED25519, public)) = key.split_first() else {
            return Err(bad("not an Ed25519 key (type 0x01)"));
        };
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| bad("an Ed25519 key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&public).map_err(|_| bad("invalid Ed25519 key"))?;
        let expected = key_id(name, &key);
        if id != super::hex(&expected) {
            return Err(bad("its key id does not match its name and key"));
        }
        Ok(Self {
            name: name.to_owned(),
            id: expected,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The checkpoint in `note` when this key signed it and its origin is
    /// the key's name.
    pub fn open(&self, note: &str) -> Result<Checkpoint, String> {
        let checkpoint = Checkpoint::parse(self.verify(note)?)?;
        if checkpoint.origin != self.name {
            return Err(format!(
                "the checkpoint is of {}, not of {}",
                checkpoint.origin, self.name
            ));
        }
        Ok(checkpoint)
    }

    /// The text of `note` when this key signed it (any signed note, not
    /// only a checkpoint).
    pub fn verify<'n>(&self, note: &'n str) -> Result<&'n str, String> {
        let split = note
            .find("\n\n")
            .ok_or("a signed note has its text, a blank line, then signatures")?;
        let (text, signatures) = (&note[..=split], &note[split + 2..]);
        let signed = signatures.lines().any(|line| {
            let Some(rest) = line.strip_prefix(SIGNATURE_PREFIX) else {
                return false;
            };
            let Some((name, sig)) = rest.split_once(' ') else {
                return false;
            };
            let Ok(sig) = STANDARD.decode(sig) else {
                return false;
            };
            if name != self.name || sig.len() != 68 || sig[..4] != self.id {
                return false;
            }
            Signature::from_slice(&sig[4..])
                .is_ok_and(|s| self.key.verify(text.as_bytes(), &s).is_ok())
        });
        if !signed {
            return Err(format!(
                "the note carries no valid signature of {}",
                self.name
            ));
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "example.com/log".to_owned(),
            size: 7,
            root: [9; 32],
        }
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_key_and_no_other() {
        let signer = NoteSigner::new("example.com/log", &[1; 32]);
        let note = signer.sign(&checkpoint());
        assert!(note.starts_with("example.com/log\n7\nCQkJ"));
        assert!(note.contains("\n\n\u{2014} example.com/log "));
        let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();
        assert_eq!(verifier.open(&note).unwrap(), checkpoint());

        let other = NoteSigner::new("example.com/log", &[2; 32]);
        let other = NoteVerifier::parse(&other.verifier_key()).unwrap();
        assert!(other.open(&note).is_err());
        let forged = note.replace("\n7\n", "\n8\n");
        assert!(verifier.open(&forged).is_err());
    }

    /// The example of Go's golang.org/x/mod/sumdb/note documentation: its
    /// verifier key parses, and the note it signed verifies (and, altered,
    /// does not), so notes and keys here are the ones Go's tools read.
    #[test]
    fn the_go_sumdb_note_example_verifies() {
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let text = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
        let note = format!(
            "{text}\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        );
        let verifier = NoteVerifier::parse(vkey).unwrap();
        assert_eq!(verifier.verify(&note).unwrap(), text);
        assert!(verifier.open(&note).is_err(), "not a checkpoint");
        assert!(verifier.verify(&note.replace("answer", "Answer")).is_err());
        assert!(verifier.verify(&note.replace("\u{2014} ", "- ")).is_err());
    }

    #[test]
    fn a_checkpoint_of_another_origin_is_refused() {
        let signer = NoteSigner::new("example.com/log", &[1; 32]);
        let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();
        let mut other = checkpoint();
        other.origin = "example.com/other".to_owned();
        assert!(verifier.open(&signer.sign(&other)).is_err());
    }

    #[test]
    fn key_names_have_no_space_or_plus_and_are_kept() {
        assert!(valid_name("example.com/log"));
        for bad in ["", "a b", "a+b", "tab\there", "new\nline"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        let signer = NoteSigner::new("example.com/log", &[1; 32]);
        assert_eq!(signer.name(), "example.com/log");
        let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();
        assert_eq!(verifier.name(), "example.com/log");
    }

    /// Hostile notes are refused without a panic: no text, a signature of
    /// the right name but a few bytes, or of the right name and another key.
    #[test]
    fn malformed_signatures_are_refused_not_panicked_on() {
        let signer = NoteSigner::new("example.com/log", &[1; 32]);
        let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();
        let body = checkpoint().body();
        for note in [
            "\n\n\u{2014} example.com/log AAAA\n".to_owned(),
            format!("{body}\n\u{2014} example.com/log AQI=\n"),
            NoteSigner::new("example.com/log", &[2; 32]).sign(&checkpoint()),
        ] {
            assert!(verifier.open(&note).is_err(), "{note:?}");
        }
    }

    #[test]
    fn a_verifier_key_whose_id_does_not_match_is_refused() {
        let signer = NoteSigner::new("example.com/log", &[1; 32]);
        let vkey = signer.verifier_key();
        let parts: Vec<&str> = vkey.split('+').collect();
        assert_eq!(parts[1].len(), 8);
        let wrong = format!("{}+00000000+{}", parts[0], parts[2]);
        assert!(NoteVerifier::parse(&wrong).is_err());
        assert!(NoteVerifier::parse("junk").is_err());
    }
}
