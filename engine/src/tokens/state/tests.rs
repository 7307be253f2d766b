use super::*;

#[test]
fn keys_never_leave_the_store() {
    for bad in [
        "",
        "..",
        "../x",
        "jobs/../../x",
        "/etc/passwd",
        "jobs//x",
        "jobs/./x",
        "jobs/%2e%2e/x",
        "jobs\\..\\x",
        "tokens/a b.json",
        "jobs/x\u{0}",
    ] {
        assert!(check_key(bad).is_err(), "{bad:?} was accepted");
    }
    for good in [
        "jobs/5f0c/job.json",
        "tokens/abc.json",
        "uploads/0a1b.parquet",
    ] {
        assert!(check_key(good).is_ok(), "{good:?} was refused");
    }
}

#[tokio::test]
async fn a_bounded_store_keeps_within_its_limit_and_counts_what_others_wrote() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = dir.path().to_str().unwrap();
    let s = StateStore::open(url).unwrap().bounded(1000);
    assert_eq!(s.recount().await.unwrap(), Some((0, 1000)));
    assert!(s.create("x/a", Bytes::from(vec![0; 600])).await.unwrap());
    let refused = s.create("b", Bytes::from(vec![0; 600])).await;
    assert!(
        matches!(refused, Err(Error::StateFull { .. })),
        "{refused:?}"
    );
    assert!(
        !s.exists("b").await.unwrap(),
        "a refused write leaves nothing"
    );
    // A result written piece by piece stops where the room ends.
    let mut w = s.writer("c").unwrap();
    w.put(Bytes::from(vec![0; 300])).await.unwrap();
    assert!(w.put(Bytes::from(vec![0; 300])).await.is_err());
    w.abort().await.unwrap();
    assert_eq!(s.usage(), Some((600, 1000)));
    // Rewriting a record counts its new size, not both.
    for _ in 0..10 {
        s.write("x/job", Bytes::from(vec![0; 100])).await.unwrap();
    }
    assert_eq!(s.usage(), Some((700, 1000)));
    s.write("x/job", Bytes::new()).await.unwrap();
    assert_eq!(s.usage(), Some((600, 1000)));
    // Another process on the same store writes; the next listing sees it.
    let other = StateStore::open(url).unwrap();
    other.write("d", Bytes::from(vec![0; 350])).await.unwrap();
    assert_eq!(s.recount().await.unwrap(), Some((950, 1000)));
    assert!(s.check_room(100).is_err());
    s.remove_all("x").await.unwrap();
    assert_eq!(s.usage(), Some((350, 1000)));
    assert!(s.check_room(600).is_ok());
}

#[tokio::test]
async fn a_store_that_looks_full_is_counted_again_before_it_refuses() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = dir.path().to_str().unwrap();
    let s = StateStore::open(url).unwrap().bounded(1000);
    s.create("x/a", Bytes::from(vec![0; 900])).await.unwrap();
    // An operator (another process) makes room.
    StateStore::open(url)
        .unwrap()
        .remove_all("x")
        .await
        .unwrap();
    assert!(
        s.check_room(500).is_err(),
        "this process has not seen it yet"
    );
    s.room_for(500).await.unwrap();
    assert_eq!(s.usage(), Some((0, 1000)));
}

#[tokio::test]
async fn uploads_no_record_names_are_removed_after_the_grace() {
    let s = StateStore::open("memory://state-unread-uploads")
        .unwrap()
        .bounded(1 << 20);
    let token = "a".repeat(crate::tokens::token::TOKEN_LEN);
    let record: TokenRecord = serde_json::from_value(serde_json::json!({
        "format": "ppdb-token/1", "token": token, "catalog_id": "c", "catalog_url": "u",
        "schema_version": "v", "adql": "q", "pinned_adql": "q", "snapshot": 1,
        "snapshot_time": "2026-01-01T00:00:00Z", "maxrec": null, "rows": 0,
        "overflow": false, "checksum": "x", "created_at": "2026-01-01T00:00:00Z",
        "uploads": [{"name": "t", "digest": "kept", "rows": 1}],
    }))
    .unwrap();
    s.put(&record).await.unwrap();
    for name in ["kept", "orphan"] {
        s.create(
            &format!("uploads/{name}.parquet"),
            Bytes::from_static(b"12345"),
        )
        .await
        .unwrap();
    }
    let young = s
        .remove_unread_uploads(std::time::Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(young, (0, 0), "within the grace nothing goes");
    let held = s.usage().unwrap().0;
    let gone = s
        .remove_unread_uploads(std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(gone, (1, 5));
    assert!(s.exists("uploads/kept.parquet").await.unwrap());
    assert!(!s.exists("uploads/orphan.parquet").await.unwrap());
    assert_eq!(s.usage().unwrap().0, held - 5);
}

#[tokio::test]
async fn reads_and_writes_of_bad_keys_are_refused() {
    let s = StateStore::open("memory://state-keys").unwrap();
    assert!(
        s.write("../escape", Bytes::from_static(b"x"))
            .await
            .is_err()
    );
    assert!(s.read("../../etc/passwd").await.is_err());
    assert!(s.children("..").await.is_err());
    // Refused by kind, carrying the key, before the object store is asked.
    match s.exists("jobs/../x").await {
        Err(Error::State(StateError::BadKey { key })) => assert_eq!(key, "jobs/../x"),
        other => panic!("expected a bad key, got {other:?}"),
    }
}
