//! The README's round trip, and a token alone.

use super::*;

/// The replay guide's round trip works as printed: its query on the bundled
/// sample gets a token, and its replay command repeats the same CSV.
#[test]
fn the_readme_round_trip_works_as_written() {
    let section =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/replay.md"))
            .expect("docs/replay.md");
    let line = section
        .lines()
        .find(|l| l.starts_with("$P query --format csv"))
        .expect("a query example");
    let adql = line
        .split('"')
        .nth(1)
        .expect("the example's ADQL in double quotes");
    let replay: Vec<&str> = section
        .lines()
        .find_map(|l| l.strip_prefix("$P replay "))
        .and_then(|l| l.split('#').next())
        .expect("a replay example")
        .split_whitespace()
        .collect();
    let dir = TempDir::new().unwrap();
    let home = dir.path();
    let out = ok(home, &["query", "--format", "csv", adql]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let token = stderr
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .expect("a token")
        .trim()
        .to_string();
    let mut args = vec!["replay"];
    args.extend(
        replay
            .iter()
            .map(|a| if *a == "TOKEN" { token.as_str() } else { a }),
    );
    let again = ok(home, &args);
    assert_eq!(again.stdout, out.stdout, "{args:?}");
}

/// A token alone finds the writable catalog it was made on (whose own state
/// store keeps its record), from any folder, with no --catalog or --state.
#[test]
fn a_token_alone_replays_on_the_catalog_it_was_made_on() {
    let dir = TempDir::new().unwrap();
    let home = dir.path();
    let cat = home.join("cat");
    let chunk = TestChunk::replica(
        100,
        vec![rows(
            TableId::DiaObject,
            OBJECT_COLUMNS,
            vec![object(1, 60000.0, 1), object(2, 60000.0, 3)],
        )],
    );
    ingest(home, &cat, chunk);
    let run = query(
        home,
        &cat,
        "SELECT diaObjectId, nDiaSources FROM ppdb.DiaObject",
        &[],
    );
    assert!(
        cat.join(format!("_state/tokens/{}.json", run.token))
            .is_file(),
        "the record is kept with the writable catalog"
    );
    let again = ok(home, &["replay", "--format", "csv", &run.token]);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), run.csv);
    let record = ok(home, &["token", "show", &run.token]);
    assert!(String::from_utf8_lossy(&record.stdout).contains(&run.token));
    // A token nobody made says where it was looked for.
    let out = ppdb(home, &["replay", "aaaaaaaaaaaaaaaaaaaa"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown token") && stderr.contains("_state"),
        "{stderr}"
    );
}
