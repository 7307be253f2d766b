//! What a query's parts name and show: output columns, table keys, and which
//! of them already make an order total.

use super::*;

/// Output column names (lower-cased; empty for unnamed expressions) of query parts.
pub(super) struct Shape<'a> {
    pub(super) tables: &'a [Table],
    pub(super) ctes: HashMap<String, SqlQuery>,
    pub(super) depth: usize,
}

/// A relation in a FROM clause: its name for qualified wildcards, and its columns
/// with whether `*` shows them (the right side of a USING or NATURAL join does not
/// repeat the join columns).
struct Rel {
    name: String,
    columns: Vec<(String, bool)>,
}

impl Rel {
    /// A relation under its name, or under its alias (which may rename its columns).
    fn new(name: String, columns: Vec<String>, alias: Option<&TableAlias>) -> Rel {
        let (name, columns) = match alias {
            Some(a) if !a.columns.is_empty() => (
                lower(&a.name),
                a.columns.iter().map(|c| lower(&c.name)).collect(),
            ),
            Some(a) => (lower(&a.name), columns),
            None => (name, columns),
        };
        Rel {
            name,
            columns: columns.into_iter().map(|c| (c, true)).collect(),
        }
    }
}

/// The aggregate functions, in ADQL's spelling and the planner's.
const AGGREGATES: [&str; 5] = ["count", "sum", "avg", "min", "max"];

fn has_aggregate(items: &[SelectItem]) -> bool {
    struct Find(bool);
    impl sqlparser::ast::Visitor for Find {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if let Expr::Function(f) = e
                && let Some(ObjectNamePart::Identifier(id)) = f.name.0.last()
                && AGGREGATES.contains(&id.value.to_lowercase().as_str())
            {
                self.0 = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut find = Find(false);
    for item in items {
        let _ = sqlparser::ast::Visit::visit(item, &mut find);
    }
    find.0
}

/// A table name's parts, lower-cased.
fn name_parts(name: &sqlparser::ast::ObjectName) -> Option<Vec<String>> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(id) => Some(lower(id)),
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}

impl Shape<'_> {
    /// The served table `[schema.]table` (lower-cased parts) names.
    fn table(&self, parts: &[String]) -> Option<&Table> {
        let (schema, table) = match parts {
            [t] => (None, t),
            [s, t] | [_, s, t] => (Some(s), t),
            _ => return None,
        };
        self.tables.iter().find(|x| {
            x.name.to_lowercase() == *table && schema.is_none_or(|s| x.schema.to_lowercase() == *s)
        })
    }

    /// The output positions (1-based) of the keys of the tables a plain
    /// `SELECT` reads (one table, or tables joined ON a condition or CROSS),
    /// when it shows every key column of every table as itself: each row is
    /// then one combination of rows of those tables (an outer join's missing
    /// side shows NULL keys), unique by those keys alone. Ordering by them is
    /// total, and far cheaper than ordering by every column: a TOP over a join
    /// keeps a few rows of a few keys, not every column of every pair.
    pub(super) fn key_positions(&self, body: &SetExpr) -> Option<Vec<usize>> {
        let SetExpr::Select(s) = body else {
            return None;
        };
        let plain = matches!(&s.group_by, sqlparser::ast::GroupByExpr::Expressions(g, _) if g.is_empty())
            && s.having.is_none()
            && !has_aggregate(&s.projection);
        if !plain {
            return None;
        }
        // Every relation: its qualifier (alias or table name) and the table.
        let mut rels: Vec<(String, &Table)> = Vec::new();
        for twj in &s.from {
            let factors =
                std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation));
            for (n, factor) in factors.enumerate() {
                if n > 0 {
                    let on_or_cross = match &twj.joins[n - 1].join_operator {
                        sqlparser::ast::JoinOperator::CrossJoin(_) => true,
                        op => matches!(
                            crate::walk::adql_join_constraint!(op),
                            Some(JoinConstraint::On(_))
                        ),
                    };
                    if !on_or_cross {
                        return None;
                    }
                }
                let TableFactor::Table { name, alias, .. } = factor else {
                    return None;
                };
                if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
                    return None;
                }
                let parts = name_parts(name)?;
                if matches!(parts.as_slice(), [one] if self.ctes.contains_key(one)) {
                    return None;
                }
                let found = self.table(&parts)?;
                if found.key.is_empty() {
                    return None;
                }
                let qualifier = alias
                    .as_ref()
                    .map(|a| lower(&a.name))
                    .unwrap_or(parts.last()?.clone());
                rels.push((qualifier, found));
            }
        }
        let columns = |t: &Table| -> Vec<String> {
            t.columns.iter().map(|c| c.name.to_lowercase()).collect()
        };
        // The relation and column an output expression shows as itself, if any.
        let is_self = |e: &Expr| -> Option<(usize, String)> {
            match e {
                Expr::Identifier(id) => {
                    let c = lower(id);
                    let mut owners = rels
                        .iter()
                        .enumerate()
                        .filter(|(_, (_, t))| columns(t).contains(&c));
                    match (owners.next(), owners.next()) {
                        (Some((i, _)), None) => Some((i, c)),
                        _ => None,
                    }
                }
                Expr::CompoundIdentifier(ids) => {
                    let (last, rest) = ids.split_last()?;
                    let q = rest.last().map(lower)?;
                    let i = rels.iter().position(|(name, _)| *name == q)?;
                    Some((i, lower(last)))
                }
                _ => None,
            }
        };
        // Which column each output position shows as itself, if any.
        let mut shown: Vec<Option<(usize, String)>> = Vec::new();
        for item in &s.projection {
            match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    shown.push(is_self(e));
                }
                SelectItem::Wildcard(_) => {
                    for (i, (_, t)) in rels.iter().enumerate() {
                        shown.extend(columns(t).into_iter().map(|c| Some((i, c))));
                    }
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(name),
                    _,
                ) => {
                    let q = name_parts(name)?.last()?.clone();
                    let i = rels.iter().position(|(n, _)| *n == q)?;
                    shown.extend(columns(rels[i].1).into_iter().map(|c| Some((i, c))));
                }
                _ => return None,
            }
        }
        let mut positions = Vec::new();
        for (i, (_, t)) in rels.iter().enumerate() {
            for k in &t.key {
                let k = k.to_lowercase();
                let at = shown
                    .iter()
                    .position(|c| c.as_ref().is_some_and(|(r, c)| *r == i && *c == k))?;
                positions.push(at + 1);
            }
        }
        (!positions.is_empty()).then_some(positions)
    }

    fn query(&mut self, q: &SqlQuery) -> Option<Vec<String>> {
        self.set_expr(&q.body)
    }

    pub(super) fn set_expr(&mut self, body: &SetExpr) -> Option<Vec<String>> {
        // CTEs referring to CTEs recurse; a bound keeps a malformed query from looping.
        self.depth += 1;
        let out = if self.depth > 64 {
            None
        } else {
            match body {
                SetExpr::Select(s) => self.select(s),
                SetExpr::Query(q) => self.query(q),
                SetExpr::SetOperation { left, .. } => self.set_expr(left),
                _ => None,
            }
        };
        self.depth -= 1;
        out
    }

    fn select(&mut self, s: &Select) -> Option<Vec<String>> {
        let mut rels = Vec::new();
        for twj in &s.from {
            self.from(twj, &mut rels)?;
        }
        let mut out = Vec::new();
        for item in &s.projection {
            match item {
                SelectItem::UnnamedExpr(Expr::Identifier(id)) => out.push(lower(id)),
                SelectItem::UnnamedExpr(Expr::CompoundIdentifier(ids)) => {
                    out.push(ids.last().map(lower).unwrap_or_default());
                }
                SelectItem::UnnamedExpr(_) => out.push(String::new()),
                SelectItem::ExprWithAlias { alias, .. } => out.push(lower(alias)),
                SelectItem::Wildcard(_) => {
                    for r in &rels {
                        out.extend(
                            r.columns
                                .iter()
                                .filter(|(_, shown)| *shown)
                                .map(|(c, _)| c.clone()),
                        );
                    }
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(n),
                    _,
                ) => {
                    let want = match n.0.last()? {
                        ObjectNamePart::Identifier(id) => lower(id),
                        ObjectNamePart::Function(_) => return None,
                    };
                    let r = rels.iter().find(|r| r.name == want)?;
                    out.extend(r.columns.iter().map(|(c, _)| c.clone()));
                }
                _ => return None,
            }
        }
        Some(out)
    }

    fn from(&mut self, twj: &TableWithJoins, rels: &mut Vec<Rel>) -> Option<()> {
        self.factor(&twj.relation, rels)?;
        for j in &twj.joins {
            let start = rels.len();
            self.factor(&j.relation, rels)?;
            let constraint = crate::walk::adql_join_constraint!(&j.join_operator)?;
            let hidden: Vec<String> = match constraint {
                JoinConstraint::Using(names) => names
                    .iter()
                    .filter_map(|n| match n.0.last() {
                        Some(ObjectNamePart::Identifier(id)) => Some(lower(id)),
                        _ => None,
                    })
                    .collect(),
                JoinConstraint::Natural => rels[..start]
                    .iter()
                    .flat_map(|r| r.columns.iter().filter(|(_, s)| *s).map(|(c, _)| c.clone()))
                    .filter(|c| {
                        rels[start..]
                            .iter()
                            .any(|r| r.columns.iter().any(|(rc, _)| rc == c))
                    })
                    .collect(),
                _ => vec![],
            };
            for r in &mut rels[start..] {
                for (c, shown) in &mut r.columns {
                    if hidden.contains(c) {
                        *shown = false;
                    }
                }
            }
        }
        Some(())
    }

    fn factor(&mut self, t: &TableFactor, rels: &mut Vec<Rel>) -> Option<()> {
        match t {
            TableFactor::Table { name, alias, .. } => {
                let parts = name_parts(name)?;
                let columns = match parts.as_slice() {
                    [one] if self.ctes.contains_key(one) => {
                        let cte = self.ctes.get(one)?.clone();
                        self.query(&cte)?
                    }
                    _ => {
                        let found = self.table(&parts)?;
                        found
                            .columns
                            .iter()
                            .map(|c| c.name.to_lowercase())
                            .collect()
                    }
                };
                rels.push(Rel::new(parts.last()?.clone(), columns, alias.as_ref()));
                Some(())
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let columns = self.query(subquery)?;
                rels.push(Rel::new(String::new(), columns, alias.as_ref()));
                Some(())
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.from(table_with_joins, rels),
            _ => None,
        }
    }
}

fn lower(id: &Ident) -> String {
    id.value.to_lowercase()
}
