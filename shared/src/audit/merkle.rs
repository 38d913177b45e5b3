//! RFC 9162 (Certificate Transparency 2.0) Merkle tree arithmetic over
//! SHA-256: hashing, appending leaves to the right edge, which stored
//! subtrees a proof needs, and checking proofs.
//!
//! The store keeps every complete subtree, node `(level, idx)` covering
//! leaves `[idx << level, (idx + 1) << level)`. Every subtree that RFC 9162's
//! recursive definitions split off is aligned that way or is the right edge
//! of one, and a right edge is the fold of the complete subtrees its size
//! decomposes into, so a proof is a handful of stored nodes and no leaf is
//! ever read to answer one.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(leaf);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// A complete subtree: `2^level` leaves from `idx << level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    pub level: u32,
    pub idx: u64,
}

/// The complete subtrees that leaves `[start, end)` decompose into, left to
/// right; `start` must be aligned to the largest of them (RFC 9162's splits
/// always are).
pub fn decompose(start: u64, end: u64) -> Vec<Node> {
    let mut nodes = Vec::new();
    let mut at = start;
    while at < end {
        let level = 63 - (end - at).leading_zeros();
        nodes.push(Node {
            level,
            idx: at >> level,
        });
        at += 1 << level;
    }
    nodes
}

/// The hash of leaves `[start, end)` from the hashes of [`decompose`]'s
/// nodes, in that order: the right edge folds from the right.
pub fn fold(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)))
}

/// Largest power of two smaller than `n` (n > 1).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The ranges whose hashes form the inclusion proof of leaf `index` in a
/// tree of `size` leaves, from the leaf up (RFC 9162 section 2.1.3.1).
pub fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let (mut start, mut end, mut m) = (0, size, index);
    while end - start > 1 {
        let k = split(end - start);
        if m < k {
            ranges.push((start + k, end));
            end = start + k;
        } else {
            ranges.push((start, start + k));
            start += k;
            m -= k;
        }
    }
    ranges.reverse();
    ranges
}

/// The ranges whose hashes form the consistency proof between trees of
/// `first` and `second` leaves (RFC 9162 section 2.1.4.1).
pub fn consistency_ranges(first: u64, second: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    if first == 0 || first >= second {
        return ranges;
    }
    let (mut start, mut end, mut m, mut whole) = (0, second, first, true);
    loop {
        if m == end - start {
            if !whole {
                ranges.push((start, end));
            }
            break;
        }
        let k = split(end - start);
        if m <= k {
            ranges.push((start + k, end));
            end = start + k;
        } else {
            ranges.push((start, start + k));
            start += k;
            m -= k;
            whole = false;
        }
    }
    ranges.reverse();
    ranges
}

/// The walk from a leaf to the root that both proof checks of RFC 9162
/// (sections 2.1.3.2 and 2.1.4.2) make: `f_n` the node's index, `s_n` the
/// last index, at each level.
struct Walk {
    f_n: u64,
    s_n: u64,
}

impl Walk {
    /// Whether the next proof hash is the left sibling; None when the walk
    /// has reached the root already (a proof too long).
    fn next(&mut self) -> Option<bool> {
        if self.s_n == 0 {
            return None;
        }
        let left = self.f_n & 1 == 1 || self.f_n == self.s_n;
        if left && self.f_n & 1 == 0 {
            while self.f_n & 1 == 0 && self.f_n != 0 {
                self.f_n >>= 1;
                self.s_n >>= 1;
            }
        }
        self.f_n >>= 1;
        self.s_n >>= 1;
        Some(left)
    }

    fn at_root(&self) -> bool {
        self.s_n == 0
    }
}

/// Checks an inclusion proof (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let mut walk = Walk {
        f_n: index,
        s_n: size - 1,
    };
    let mut r = *leaf;
    for p in path {
        match walk.next() {
            Some(true) => r = node_hash(p, &r),
            Some(false) => r = node_hash(&r, p),
            None => return false,
        }
    }
    walk.at_root() && r == *root
}

/// Checks a consistency proof (RFC 9162 section 2.1.4.2).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 {
        return proof.is_empty();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if first.is_power_of_two() {
        path.insert(0, *first_root);
    }
    let Some((&start, rest)) = path.split_first() else {
        return false;
    };
    let mut walk = Walk {
        f_n: first - 1,
        s_n: second - 1,
    };
    while walk.f_n & 1 == 1 {
        walk.f_n >>= 1;
        walk.s_n >>= 1;
    }
    let (mut fr, mut sr) = (start, start);
    for c in rest {
        match walk.next() {
            Some(true) => {
                fr = node_hash(c, &fr);
                sr = node_hash(c, &sr);
            }
            Some(false) => sr = node_hash(&sr, c),
            None => return false,
        }
    }
    fr == *first_root && sr == *second_root && walk.at_root()
}

/// The right edge of a tree: its complete subtrees, largest first, which is
/// all that appending needs.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    nodes: Vec<(Node, Hash)>,
}

impl Frontier {
    /// The nodes a frontier of `size` leaves is made of.
    pub fn nodes_of(size: u64) -> Vec<Node> {
        decompose(0, size)
    }

    /// A frontier from its nodes' hashes, in [`Frontier::nodes_of`]' order.
    pub fn new(size: u64, hashes: Vec<Hash>) -> Option<Self> {
        let nodes = Self::nodes_of(size);
        (nodes.len() == hashes.len()).then(|| Self {
            size,
            nodes: nodes.into_iter().zip(hashes).collect(),
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf; `completed` receives every subtree it completes
    /// (the leaf itself first).
    pub fn push(&mut self, leaf: Hash, completed: &mut Vec<(Node, Hash)>) {
        let mut node = (
            Node {
                level: 0,
                idx: self.size,
            },
            leaf,
        );
        completed.push(node);
        while let Some(&(last, hash)) = self.nodes.last() {
            if last.level != node.0.level {
                break;
            }
            self.nodes.pop();
            node = (
                Node {
                    level: last.level + 1,
                    idx: last.idx >> 1,
                },
                node_hash(&hash, &node.1),
            );
            completed.push(node);
        }
        self.nodes.push(node);
        self.size += 1;
    }

    pub fn root(&self) -> Hash {
        let hashes: Vec<Hash> = self.nodes.iter().map(|(_, h)| *h).collect();
        fold(&hashes).unwrap_or_else(empty_root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MTH straight from RFC 9162's recursive definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn range_hash(leaves: &[Hash], (a, b): (u64, u64)) -> Hash {
        mth(&leaves[a as usize..b as usize])
    }

    fn unhex(s: &str) -> Hash {
        let bytes: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    }

    /// The reference tree of RFC 6962's test vectors, which Certificate
    /// Transparency implementations share: the roots of its first 1 to 8
    /// leaves, and the empty tree's (SHA-256 of nothing).
    #[test]
    fn roots_match_the_certificate_transparency_test_vectors() {
        let leaves: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        assert_eq!(
            empty_root(),
            unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        let mut frontier = Frontier::default();
        let mut completed = Vec::new();
        for (leaf, root) in leaves.iter().zip(roots) {
            frontier.push(leaf_hash(leaf), &mut completed);
            assert_eq!(frontier.root(), unhex(root), "size {}", frontier.size());
        }
    }

    /// From the empty tree, to itself, or backwards, there is nothing to
    /// prove (GetConsistencyProof takes a first size of 0).
    #[test]
    fn consistency_from_nothing_or_to_the_same_size_is_empty() {
        for n in 0..20 {
            assert!(consistency_ranges(0, n).is_empty());
            assert!(consistency_ranges(n, n).is_empty());
            assert!(consistency_ranges(n + 1, n).is_empty());
        }
        let root = leaf_hash(b"x");
        assert!(verify_consistency(0, 5, &empty_root(), &root, &[]));
        assert!(!verify_consistency(0, 5, &empty_root(), &root, &[root]));
        assert!(!verify_consistency(3, 2, &root, &root, &[]));
        let other = leaf_hash(b"y");
        assert!(verify_consistency(4, 4, &root, &root, &[]));
        assert!(
            !verify_consistency(4, 4, &root, &other, &[]),
            "a fork at one size"
        );
        assert!(!verify_consistency(4, 4, &root, &root, &[root]));
    }

    /// An inner node passed off as a leaf, with the rest of the path above
    /// it, leads to the root too: only the walk ending exactly at the root
    /// refuses it (and the root itself as a leaf with no path).
    #[test]
    fn an_inner_node_is_not_a_leaf() {
        let all = leaves(4);
        let left = node_hash(&all[0], &all[1]);
        let right = node_hash(&all[2], &all[3]);
        let root = node_hash(&left, &right);
        assert!(verify_inclusion(&all[0], 0, 4, &[all[1], right], &root));
        assert!(!verify_inclusion(&left, 0, 4, &[right], &root));
        assert!(!verify_inclusion(&root, 0, 4, &[], &root));
    }

    /// A frontier rebuilt from the stored nodes of its size (what each
    /// batch of the sequencer does) goes on exactly as the one it was read
    /// from, and counts its leaves.
    #[test]
    fn a_frontier_rebuilt_from_its_nodes_goes_on_alike() {
        let all = leaves(40);
        for cut in [0usize, 1, 5, 8, 13, 21] {
            let mut original = Frontier::default();
            let mut completed = Vec::new();
            for leaf in &all[..cut] {
                original.push(*leaf, &mut completed);
            }
            assert_eq!(original.size(), cut as u64);
            let nodes = Frontier::nodes_of(cut as u64);
            assert_eq!(nodes.len(), (cut as u64).count_ones() as usize);
            let hashes: Vec<Hash> = nodes
                .iter()
                .map(|n| completed.iter().find(|(c, _)| c == n).unwrap().1)
                .collect();
            let mut rebuilt = Frontier::new(cut as u64, hashes).unwrap();
            assert!(Frontier::new(cut as u64 + 1, Vec::new()).is_none());
            let mut sink = Vec::new();
            for leaf in &all[cut..] {
                original.push(*leaf, &mut sink);
                rebuilt.push(*leaf, &mut sink);
                assert_eq!(rebuilt.root(), original.root());
                assert_eq!(rebuilt.size(), original.size());
            }
        }
    }

    #[test]
    fn frontier_roots_match_the_recursive_definition() {
        let all = leaves(70);
        let mut frontier = Frontier::default();
        let mut completed = Vec::new();
        assert_eq!(frontier.root(), empty_root());
        for (i, leaf) in all.iter().enumerate() {
            frontier.push(*leaf, &mut completed);
            assert_eq!(frontier.root(), mth(&all[..=i]), "size {}", i + 1);
        }
        for (node, hash) in completed {
            let start = node.idx << node.level;
            let end = start + (1 << node.level);
            assert_eq!(hash, range_hash(&all, (start, end)));
        }
    }

    #[test]
    fn every_proof_of_trees_up_to_40_leaves_verifies_and_a_wrong_one_does_not() {
        let all = leaves(40);
        for size in 1..=40u64 {
            let root = mth(&all[..size as usize]);
            for index in 0..size {
                let path: Vec<Hash> = inclusion_ranges(index, size)
                    .into_iter()
                    .map(|r| range_hash(&all, r))
                    .collect();
                assert!(verify_inclusion(
                    &all[index as usize],
                    index,
                    size,
                    &path,
                    &root
                ));
                let other = (index + 1) % size;
                if other != index {
                    assert!(!verify_inclusion(
                        &all[other as usize],
                        index,
                        size,
                        &path,
                        &root
                    ));
                }
            }
            for first in 1..=size {
                let proof: Vec<Hash> = consistency_ranges(first, size)
                    .into_iter()
                    .map(|r| range_hash(&all, r))
                    .collect();
                let first_root = mth(&all[..first as usize]);
                assert!(
                    verify_consistency(first, size, &first_root, &root, &proof),
                    "{first} -> {size}"
                );
                if first < size {
                    let forked = leaf_hash(b"fork");
                    assert!(!verify_consistency(first, size, &forked, &root, &proof));
                }
            }
        }
    }

    #[test]
    fn proof_ranges_decompose_into_stored_subtrees() {
        for size in 1..=64u64 {
            for index in 0..size {
                for (a, b) in inclusion_ranges(index, size) {
                    let nodes = decompose(a, b);
                    assert_eq!(nodes[0].idx << nodes[0].level, a);
                }
            }
        }
    }
}
