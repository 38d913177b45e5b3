//! The users that `GetCurrentUser` answered with, so that `/me` reads no
//! database while the revocation state is fresh. Every change to a user
//! row that a caller can see (roles, disabled) bumps the token generation
//! and writes a revocation fact. An entry is kept with the generation it
//! was read at and answers only a token of that generation, so a token
//! minted after a change on another replica never gets the old row, even
//! before this replica's poll has seen the fact (which drops the entry).
//! While the state is stale the cache is not used. Bounded: emptied when
//! full.

use std::{collections::HashMap, sync::RwLock};

use shared::proto::auth::v1 as pb;
use uuid::Uuid;

const CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct UserCache {
    users: RwLock<HashMap<Uuid, (i64, pb::User)>>,
}

impl UserCache {
    /// The user as read at `generation`.
    pub(crate) fn get(&self, id: Uuid, generation: i64) -> Option<pb::User> {
        let users = self.users.read().ok()?;
        let (read_at, user) = users.get(&id)?;
        (*read_at == generation).then(|| user.clone())
    }

    pub(crate) fn put(&self, id: Uuid, generation: i64, user: pb::User) {
        if let Ok(mut users) = self.users.write() {
            if users.len() >= CAPACITY {
                users.clear();
            }
            users.insert(id, (generation, user));
        }
    }

    pub(crate) fn forget(&self, id: Uuid) {
        if let Ok(mut users) = self.users.write() {
            users.remove(&id);
        }
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut users) = self.users.write() {
            users.clear();
        }
    }
}
