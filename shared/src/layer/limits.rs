//! Token-bucket limits per client address on the public RPCs.
//!
//! Threat: the public RPCs need no credential, and some are costly (every
//! Register and Login spends an argon2 hash; every attempt is a guess).
//! Password spraying and credential stuffing try one or two passwords
//! against thousands of emails, so no email's own throttle ever trips, and
//! registration floods cost a hash and a row each. So every public RPC that
//! is given a limit has a token bucket (GCRA, from `governor`) per client
//! address (see [`crate::client`]: behind `TRUSTED_PROXIES` the forwarded
//! address; IPv6 by /64). Over it the call is refused in the layer, before
//! any handler runs: nothing is hashed or written per refused call, and the
//! refusals are audited once per address and method per window
//! ([`super::windows`]).
//!
//! The buckets live in each replica's memory: with N replicas behind a load
//! balancer a client gets at most N times the configured rate (the README
//! says so). What must hold across replicas, the escalating per-address
//! penalty for failed logins, is kept in the database by auth-service.

use std::{collections::HashMap, net::IpAddr, num::NonZeroU32, str::FromStr, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock as _};
use ipnet::IpNet;

use crate::{
    client::{canonical, limit_key},
    error::Error,
};

/// A configured limit: `RATE/PERIOD:BURST` (`3/1s:30`, `5/1m:10`), or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSpec {
    Off,
    Rate {
        calls: u32,
        per: Duration,
        burst: u32,
    },
}

impl FromStr for LimitSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        let bad = || format!("{s:?}: expected RATE/PERIOD:BURST (for example 3/1s:30) or off");
        let (rate, burst) = s.split_once(':').ok_or_else(bad)?;
        let (calls, per) = rate.split_once('/').ok_or_else(bad)?;
        let calls: u32 = calls.trim().parse().map_err(|_| bad())?;
        let burst: u32 = burst.trim().parse().map_err(|_| bad())?;
        let per = humantime::parse_duration(per.trim()).map_err(|_| bad())?;
        if calls == 0 || burst == 0 || per.is_zero() {
            return Err(bad());
        }
        Ok(Self::Rate { calls, per, burst })
    }
}

impl std::fmt::Display for LimitSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Rate { calls, per, burst } => {
                write!(f, "{calls}/{}:{burst}", humantime::format_duration(*per))
            }
        }
    }
}

struct MethodLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// What the QuotaFailure names: the method and its limit.
    description: String,
}

/// The limits of one service, by method path.
pub struct ClientLimits {
    methods: HashMap<&'static str, MethodLimit>,
    exempt: Vec<IpNet>,
}

impl std::fmt::Debug for ClientLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLimits")
            .field("methods", &self.methods.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ClientLimits {
    /// Limits for `(method path, spec)` pairs; addresses in `exempt` (other
    /// services, health checkers) are never limited.
    pub fn new(limits: &[(&'static str, LimitSpec)], exempt: Vec<IpNet>) -> Self {
        let methods = limits
            .iter()
            .filter_map(|(path, spec)| {
                let LimitSpec::Rate { calls, per, burst } = *spec else {
                    return None;
                };
                let quota = Quota::with_period(per / calls)?.allow_burst(NonZeroU32::new(burst)?);
                let name = path.rsplit('/').next().unwrap_or(path);
                Some((
                    *path,
                    MethodLimit {
                        limiter: DefaultKeyedRateLimiter::keyed(quota),
                        description: format!(
                            "{name}: {calls} per {} per client address, bursts of {burst}",
                            humantime::format_duration(per)
                        ),
                    },
                ))
            })
            .collect();
        Self { methods, exempt }
    }

    /// Takes one token of `method`'s bucket for `client`, or says how long
    /// to wait. Calls without a known address (no TCP peer) are not limited.
    pub fn check(&self, method: &'static str, client: Option<IpAddr>) -> Result<(), Error> {
        let (Some(limit), Some(ip)) = (self.methods.get(method), client) else {
            return Ok(());
        };
        let ip = canonical(ip);
        if self.exempt.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        limit
            .limiter
            .check_key(&limit_key(ip))
            .map_err(|not_until| Error::RateLimited {
                description: limit.description.clone(),
                retry_after: not_until
                    .wait_time_from(limit.limiter.clock().now())
                    .max(Duration::from_millis(1)),
            })
    }

    /// Forgets buckets that are full again (bounded memory).
    pub fn shrink(&self) {
        for limit in self.methods.values() {
            limit.limiter.retain_recent();
            limit.limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print() {
        let spec: LimitSpec = "3/1s:30".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            spec,
            LimitSpec::Rate {
                calls: 3,
                per: Duration::from_secs(1),
                burst: 30
            }
        );
        assert_eq!(spec.to_string(), "3/1s:30");
        assert_eq!("off".parse::<LimitSpec>(), Ok(LimitSpec::Off));
        for bad in ["3/1s", "0/1s:3", "3/0s:3", "x/1s:3", "3/1s:0", ""] {
            assert!(bad.parse::<LimitSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bucket_refuses_past_its_burst_and_exempts_whom_it_is_told() {
        let path = "/docverify.auth.v1.AuthService/Login";
        let limits = ClientLimits::new(
            &[(path, "1/1h:3".parse().unwrap_or_else(|e| panic!("{e}")))],
            vec!["10.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}"))],
        );
        let client: IpAddr = "198.51.100.1".parse().unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..3 {
            assert!(limits.check(path, Some(client)).is_ok());
        }
        assert!(matches!(
            limits.check(path, Some(client)),
            Err(Error::RateLimited { .. })
        ));
        let other: IpAddr = "198.51.100.2".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(limits.check(path, Some(other)).is_ok());
        // The same address written as IPv4-mapped IPv6 is exempt too.
        for exempt in ["10.1.1.1", "::ffff:10.1.1.1"] {
            let exempt: IpAddr = exempt.parse().unwrap_or_else(|e| panic!("{e}"));
            for _ in 0..10 {
                assert!(limits.check(path, Some(exempt)).is_ok());
            }
        }
    }

    #[test]
    fn buckets_full_again_are_forgotten() {
        let path = "/docverify.auth.v1.AuthService/Register";
        let limits = ClientLimits::new(
            &[(path, "1000/1s:1".parse().unwrap_or_else(|e| panic!("{e}")))],
            Vec::new(),
        );
        for last in 1..=100u8 {
            let client = IpAddr::from([198, 51, 100, last]);
            assert!(limits.check(path, Some(client)).is_ok());
        }
        let buckets = || limits.methods[path].limiter.len();
        assert_eq!(buckets(), 100);
        // One call per millisecond refills: after 20 ms every bucket is full.
        std::thread::sleep(Duration::from_millis(20));
        limits.shrink();
        assert_eq!(
            buckets(),
            0,
            "memory is bounded by the callers of the last moments"
        );
    }
}
