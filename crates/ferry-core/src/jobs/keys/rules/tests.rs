//! The seed rules file end to end: loading, renaming, the reverse mapping, SCAN globs and
//! the pinned fingerprint.

use super::test_support::{SEED, load};

#[test]
fn seed_file_loads_cleanly_and_maps_every_kind_of_key() {
    let loaded = load(SEED).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let set = loaded.rules;
    let names: Vec<&str> = set.rules().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["reminder", "history", "profile", "cancellation", "cache"]
    );
    let p = "josancamon:rayban-meta-glasses-api:";
    let cases = [
        (
            "reminder:evt_00000001_42",
            "meta-glasses:reminder:event:evt_00000001_42",
            0,
        ),
        (
            "conversation_history:1001",
            "meta-glasses:user:history:1001",
            1,
        ),
        ("user_profile:1001", "meta-glasses:user:profile:1001", 2),
        (
            "cancellation:wa:1001",
            "meta-glasses:state:cancellation:wa:1001",
            3,
        ),
        (
            "d2VhdGhlciBpbiBjaXR5IDE=",
            "meta-glasses:cache:generic:d2VhdGhlciBpbiBjaXR5IDE=",
            4,
        ),
        // No specific rule takes it and it has no colon: the generic cache rule does.
        ("reminder", "meta-glasses:cache:generic:reminder", 4),
    ];
    for (old, new, rule) in cases {
        let old = format!("{p}{old}");
        assert_eq!(
            set.rename(old.as_bytes()),
            Some((rule, new.as_bytes().to_vec())),
            "{old}"
        );
        assert_eq!(
            set.reverse(new.as_bytes()),
            Some((rule, old.as_bytes().to_vec())),
            "{new}"
        );
    }
    for unmatched in [
        "other:key",
        "josancamon:rayban-meta-glasses-api:",
        "josancamon:rayban-meta-glasses-api:reminder:a:b",
        "josancamon:rayban-meta-glasses-api:cancellation:wa",
        "xjosancamon:rayban-meta-glasses-api:abc",
    ] {
        assert_eq!(set.rename(unmatched.as_bytes()), None, "{unmatched}");
    }
    assert_eq!(set.reverse(b"meta-glasses:nothing:here"), None);
    assert_eq!(
        set.scan_globs(),
        vec![b"josancamon:rayban-meta-glasses-api:*".to_vec()]
    );
    assert_eq!(set.len(), 5);
    assert!(!set.is_empty());
    // Pinned: resumed runs compare fingerprints written by earlier builds.
    assert_eq!(set.fingerprint(), "cdfb0a2ff014e9c3");
}
