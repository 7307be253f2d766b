//! The ADQL dialect for sqlparser.

use sqlparser::dialect::Dialect;
use sqlparser::keywords::Keyword;

/// ADQL 2.1 lexical rules: regular identifiers start with a letter, delimited
/// ones are double-quoted, strings use only `''` escapes, and tables may carry
/// `FOR SYSTEM_TIME AS OF` (our time-travel extension).
#[derive(Debug, Default, Clone, Copy)]
pub struct AdqlDialect;

impl Dialect for AdqlDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_ascii_alphabetic()
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_ascii_alphanumeric() || ch == '_'
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '"'
    }

    fn supports_table_versioning(&self) -> bool {
        true
    }

    fn supports_string_literal_backslash_escape(&self) -> bool {
        false
    }

    // ADQL reserves every SQL keyword, so a keyword whose own syntax failed
    // (`CAST(x`, `INTERVAL ...`) is an error, not a name to retry. sqlparser's
    // retry reparses everything inside, at every level: `CAST(CAST(...` 24 deep
    // took 37 s to refuse, found by the fuzzer.
    fn is_reserved_for_identifier(&self, _keyword: Keyword) -> bool {
        true
    }
}
