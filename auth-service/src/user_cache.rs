//! The users that `GetCurrentUser` answered with, so that `/me` reads no
//! database while the revocation state is fresh. Every change to a user
//! row that a caller can see (roles, disabled) writes a revocation fact,
//! and every fact, from this replica or another, drops its user from here;
//! while the state is stale the cache is not used. Bounded: emptied when
//! full.

use std::{collections::HashMap, sync::RwLock};

use shared::proto::auth::v1 as pb;
use uuid::Uuid;

const CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct UserCache {
    users: RwLock<HashMap<Uuid, pb::User>>,
}

impl UserCache {
    pub(crate) fn get(&self, id: Uuid) -> Option<pb::User> {
        self.users.read().ok()?.get(&id).cloned()
    }

    pub(crate) fn put(&self, id: Uuid, user: pb::User) {
        if let Ok(mut users) = self.users.write() {
            if users.len() >= CAPACITY {
                users.clear();
            }
            users.insert(id, user);
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
