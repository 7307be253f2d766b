//! Async (UWS) jobs: their life, failures, deadlines, aborts and restarts.

use super::*;

#[tokio::test]
async fn an_async_job_runs_waits_and_gives_the_sync_result() {
    let s = Server::start(&[]);
    let job = create_job(
        &s.tap,
        &[("LANG", "ADQL"), ("QUERY", TOP3), ("RUNID", "mine")],
    )
    .await;
    let (_, ct, doc) = get(&job, &[]).await;
    assert!(ct.starts_with("text/xml"), "{ct}");
    assert_eq!(element(&doc, "phase"), "PENDING");
    assert_eq!(element(&doc, "runId"), "mine");
    assert!(doc.contains("<uws:parameter id=\"QUERY\">"), "{doc}");
    let (_, _, phase) = get(&format!("{job}/phase"), &[]).await;
    assert_eq!(phase, "PENDING");

    // Parameters may change while PENDING; so may the execution duration.
    let r = post(&job, &[("MAXREC", "2")]).await;
    assert_eq!(r.status().as_u16(), 303);
    let r = post(
        &format!("{job}/executionduration"),
        &[("EXECUTIONDURATION", "30")],
    )
    .await;
    assert_eq!(r.status().as_u16(), 303);
    let (_, _, d) = get(&format!("{job}/executionduration"), &[]).await;
    assert_eq!(d, "30");
    // A value that cannot be read is refused when a job is created, as it is
    // when set afterwards (it once gave a job of the longest duration).
    for (name, value) in [
        ("EXECUTIONDURATION", "abc"),
        ("EXECUTIONDURATION", "1e9"),
        ("DESTRUCTION", "soon"),
    ] {
        let r = post(
            &format!("{}/async", s.tap),
            &[("LANG", "ADQL"), ("QUERY", TOP3), (name, value)],
        )
        .await;
        assert_eq!(r.status().as_u16(), 400, "{name}={value}");
        let body = r.text().await.unwrap();
        assert!(body.contains(&format!("{name}={value}")), "{body}");
    }

    let r = post(&format!("{job}/phase"), &[("PHASE", "RUN")]).await;
    assert_eq!(r.status().as_u16(), 303);
    let doc = wait_done(&job).await;
    assert_eq!(element(&doc, "phase"), "COMPLETED", "{doc}");
    assert!(
        doc.contains("<uws:startTime>") && doc.contains("<uws:endTime>"),
        "{doc}"
    );
    let href = attr(&doc, "<uws:result ", "xlink:href");
    assert_eq!(href, format!("{job}/results/result"));
    let (status, ct, result) = get(&href, &[]).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("application/x-votable+xml"), "{ct}");
    let (_, _, sync) = get(
        &format!("{}/sync", s.tap),
        &[("LANG", "ADQL"), ("QUERY", TOP3), ("MAXREC", "2")],
    )
    .await;
    assert_eq!(
        without_request(&result),
        without_request(&sync),
        "async and sync give the same document"
    );
    assert!(result.contains("value=\"OVERFLOW\""), "MAXREC=2 cut 3 rows");

    // Anonymous callers cannot be told apart, so they are listed no job (the
    // listing's filters are checked with a bearer token in tests/access.rs).
    let (status, _, list) = get(&format!("{}/async", s.tap), &[]).await;
    assert_eq!(status, 200);
    assert!(!list.contains("<uws:jobref"), "{list}");

    // Parameters cannot change once the job has run.
    let r = post(&job, &[("QUERY", "SELECT 1")]).await;
    assert_eq!(r.status().as_u16(), 409);

    // DELETE removes the job and its result.
    let r = client().delete(&job).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(get(&job, &[]).await.0, 404);
    assert_eq!(get(&href, &[]).await.0, 404);
}

#[tokio::test]
async fn failed_aborted_and_destroyed_jobs() {
    let s = Server::start(&[]);
    // An error ends in ERROR with the message, as an error VOTable.
    let job = create_job(
        &s.tap,
        &[
            ("QUERY", "SELECT raa FROM ppdb.DiaObject"),
            ("PHASE", "RUN"),
        ],
    )
    .await;
    let doc = wait_done(&job).await;
    assert_eq!(element(&doc, "phase"), "ERROR", "{doc}");
    let (_, _, error) = get(&format!("{job}/error"), &[]).await;
    assert!(
        error.contains("value=\"ERROR\"") && error.contains("line 1, column 8"),
        "{error}"
    );

    // ABORT before running; then ACTION=DELETE.
    let job = create_job(&s.tap, &[("QUERY", TOP3)]).await;
    let r = post(&format!("{job}/phase"), &[("PHASE", "ABORT")]).await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(get(&format!("{job}/phase"), &[]).await.2, "ABORTED");
    let r = post(&job, &[("ACTION", "DELETE")]).await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(get(&job, &[]).await.0, 404);

    // A destruction time in the past is honoured: the job is gone.
    let job = create_job(&s.tap, &[("QUERY", TOP3)]).await;
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(300)).to_rfc3339();
    let r = post(&format!("{job}/destruction"), &[("DESTRUCTION", &soon)]).await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(get(&job, &[]).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(get(&job, &[]).await.0, 404);
    let (_, _, list) = get(&format!("{}/async", s.tap), &[]).await;
    assert!(!list.contains(job.rsplit('/').next().unwrap()), "{list}");

    // Ids that are not job ids never reach the store.
    for bad in ["..%2F..%2Fetc", "x", "00000000-0000-0000-0000-000000000000"] {
        assert_eq!(
            get(&format!("{}/async/{bad}", s.tap), &[]).await.0,
            404,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn the_execution_duration_is_enforced() {
    let s = Server::start(&["--max-duration", "1"]);
    let started = std::time::Instant::now();
    let (status, _, body) = get(&format!("{}/sync", s.tap), &[("QUERY", SLOW)]).await;
    // Stopped before its first byte went out: an error status with the document.
    assert_eq!(status, 400);
    assert!(
        body.contains("value=\"ERROR\"") && body.contains("execution duration of 1 s"),
        "{body}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));

    let job = create_job(&s.tap, &[("QUERY", SLOW), ("PHASE", "RUN")]).await;
    let (_, _, d) = get(&format!("{job}/executionduration"), &[]).await;
    assert_eq!(d, "1", "a job cannot ask for more than the server allows");
    let mut doc = String::new();
    for _ in 0..10 {
        doc = get(&job, &[("WAIT", "5")]).await.2;
        if element(&doc, "phase") == "ERROR" {
            break;
        }
    }
    assert_eq!(element(&doc, "phase"), "ERROR", "{doc}");
    assert!(doc.contains("execution duration"), "{doc}");
}

#[tokio::test]
async fn jobs_live_in_the_state_store_and_survive_a_restart() {
    let state = TempDir::new().unwrap();
    let url = state.path().to_str().unwrap();
    let first = Server::start(&["--state", url]);
    let job = create_job(&first.tap, &[("QUERY", TOP3), ("PHASE", "RUN")]).await;
    let doc = wait_done(&job).await;
    assert_eq!(element(&doc, "phase"), "COMPLETED", "{doc}");
    let (_, _, result) = get(&format!("{job}/results/result"), &[]).await;
    let id = job.rsplit('/').next().unwrap().to_string();
    drop(first);

    let second = Server::start(&["--state", url]);
    let job = format!("{}/async/{id}", second.tap);
    let (status, _, doc) = get(&job, &[]).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(element(&doc, "phase"), "COMPLETED");
    let (_, _, again) = get(&format!("{job}/results/result"), &[]).await;
    // The descriptor names the first server's address; the rows are the same.
    let body = |d: &str| d[d.find("<DATA>").unwrap()..d.find("</DATA>").unwrap()].to_string();
    assert_eq!(body(&again), body(&result));
}

/// Aborting a running job stops its query: it used to free the job's slot
/// while the query ran on, so abort loops ran any number of queries at once.
#[tokio::test]
async fn aborting_a_job_stops_its_query() {
    let s = Server::start(&["--max-duration", "120"]);
    let job = create_job(&s.tap, &[("QUERY", SLOW), ("PHASE", "RUN")]).await;
    for _ in 0..100 {
        if get(&format!("{job}/phase"), &[]).await.2.trim() == "EXECUTING" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let r = post(&format!("{job}/phase"), &[("PHASE", "ABORT")]).await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(get(&format!("{job}/phase"), &[]).await.2.trim(), "ABORTED");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before = s.cpu_seconds();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let used = s.cpu_seconds() - before;
    assert!(
        used < 0.5,
        "the aborted query still ran: {used:.2} CPU s in 2 s"
    );
}
