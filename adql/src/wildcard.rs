//! Wildcards whose columns would share a name are written out.
//!
//! `SELECT * FROM ppdb.DiaObject AS o JOIN ppdb.DiaSource AS s ON ...` gave
//! two columns named `ra` (and `dec`, `diaObjectId`, ...): pyarrow refuses to
//! read such a Parquet file, and pyvo and astroquery each renamed them their
//! own way. When the wildcards of one SELECT would bring in a name twice, they
//! are replaced by their columns, one by one, so that the walk's renaming
//! (`ra`, `ra_2`, ...) applies to them as to columns named explicitly. Joins
//! that merge their columns (`USING`, `NATURAL`) and wildcards over derived
//! tables are left to the planner, which shows merged columns once.

use std::collections::HashSet;

use sqlparser::ast::{
    Expr, Ident, JoinConstraint, Select, SelectItem, SelectItemQualifiedWildcardKind, TableFactor,
    TableWithJoins,
};

use crate::Table;
use crate::walk::adql_join_constraint;

/// A table of the FROM clause: how its columns are qualified, and what it is.
struct Source<'a> {
    qualifier: Vec<Ident>,
    table: &'a Table,
}

/// The catalog tables of a FROM clause in order; `None` if any part of it is
/// something else (a derived table) or a join merges columns.
fn sources<'a>(from: &[TableWithJoins], tables: &'a [Table]) -> Option<Vec<Source<'a>>> {
    fn walk<'a>(
        twj: &TableWithJoins,
        tables: &'a [Table],
        out: &mut Vec<Source<'a>>,
    ) -> Option<()> {
        for join in &twj.joins {
            match adql_join_constraint!(&join.join_operator) {
                Some(JoinConstraint::Using(_) | JoinConstraint::Natural) | None => return None,
                Some(_) => {}
            }
        }
        for f in std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation)) {
            match f {
                TableFactor::NestedJoin {
                    table_with_joins,
                    alias: None,
                } => walk(table_with_joins, tables, out)?,
                TableFactor::Table { name, alias, .. } => {
                    let [schema, table] = name.0.as_slice() else {
                        return None;
                    };
                    let (schema, table) = (schema.as_ident()?, table.as_ident()?);
                    let found = tables
                        .iter()
                        .find(|t| t.schema == schema.value && t.name == table.value)?;
                    let qualifier = match alias {
                        Some(a) => vec![a.name.clone()],
                        None => vec![schema.clone(), table.clone()],
                    };
                    out.push(Source {
                        qualifier,
                        table: found,
                    });
                }
                _ => return None,
            }
        }
        Some(())
    }
    let mut out = Vec::new();
    for twj in from {
        walk(twj, tables, &mut out)?;
    }
    Some(out)
}

/// The sources a wildcard item covers, if it is one.
fn covered<'s, 'a>(item: &SelectItem, sources: &'s [Source<'a>]) -> Option<Vec<&'s Source<'a>>> {
    match item {
        SelectItem::Wildcard(_) => Some(sources.iter().collect()),
        SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(name), _) => {
            let q = &name.0;
            Some(
                sources
                    .iter()
                    .filter(|s| {
                        // `o.*` names an alias; `ppdb.DiaObject.*` or `DiaObject.*` a table.
                        let own: Vec<&str> = s.qualifier.iter().map(|i| i.value.as_str()).collect();
                        let given: Vec<String> = q
                            .iter()
                            .filter_map(|p| p.as_ident().map(|i| i.value.clone()))
                            .collect();
                        own.len() >= given.len()
                            && own[own.len() - given.len()..]
                                .iter()
                                .zip(&given)
                                .all(|(a, b)| a.eq_ignore_ascii_case(b))
                    })
                    .collect(),
            )
        }
        _ => None,
    }
}

/// Writes out the wildcards of `s` if their columns would share a name.
pub(crate) fn expand_clashes(s: &mut Select, tables: &[Table]) {
    if !s.projection.iter().any(|i| {
        matches!(
            i,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    }) {
        return;
    }
    let Some(sources) = sources(&s.from, tables) else {
        return;
    };
    let mut seen = HashSet::new();
    let mut clash = false;
    for item in &s.projection {
        if let Some(covered) = covered(item, &sources) {
            for src in covered {
                for c in &src.table.columns {
                    clash |= !seen.insert(c.name.to_lowercase());
                }
            }
        }
    }
    if !clash {
        return;
    }
    let mut projection = Vec::with_capacity(s.projection.len());
    for item in std::mem::take(&mut s.projection) {
        match covered(&item, &sources) {
            Some(covered) => {
                for src in covered {
                    for c in &src.table.columns {
                        let mut parts = src.qualifier.clone();
                        parts.push(Ident::new(c.name.clone()));
                        projection.push(SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)));
                    }
                }
            }
            None => projection.push(item),
        }
    }
    s.projection = projection;
}
