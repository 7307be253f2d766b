//! Joins on `diaObjectId` between tables stored side by side.
//!
//! Every version of a DiaObject, and every DiaSource and DiaForcedSource of it,
//! lies in the same partition (the catalog's layout invariant). So when two such
//! tables are joined on `diaObjectId`, a matching pair comes from the same
//! partition, and the partitions one side's own filters leave (a cone on the
//! objects, say) are the only ones the other side needs to read. Without this a
//! cone join of DiaObject and DiaSource probes every DiaSource file. The hint is
//! given only where dropping rows that match nothing cannot change the answer
//! (as for crossmatches: see `crossmatch::may_narrow`).

use std::collections::BTreeSet;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Join, LogicalPlan};

use crate::plan::crossmatch::{column, may_narrow, ppdb_table, rewrite, scan_at, trace};

/// One side of a join to narrow to a set of partitions.
struct Narrow {
    path: Vec<usize>,
    partitions: BTreeSet<u64>,
}

/// The plan with each co-located join's sides narrowed to the partitions the
/// other side reads. Plans without such a join come back unchanged.
pub(crate) fn narrow(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let mut found = Vec::new();
    find(&plan, &mut Vec::new(), &mut found)?;
    if found.is_empty() {
        return Ok(Transformed::no(plan));
    }
    let mut plan = plan;
    for n in found {
        let partitions = n.partitions;
        plan = rewrite(plan, &n.path, &|t| t.within(partitions.clone()))?.data;
    }
    Ok(Transformed::yes(plan))
}

fn find(plan: &LogicalPlan, path: &mut Vec<usize>, found: &mut Vec<Narrow>) -> Result<()> {
    if let LogicalPlan::Join(j) = plan {
        join(j, path, found);
    }
    let mut i = 0;
    plan.apply_children(|child| {
        path.push(i);
        find(child, path, found)?;
        path.pop();
        i += 1;
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(())
}

fn join(j: &Join, path: &[usize], found: &mut Vec<Narrow>) {
    for (l, r) in &j.on {
        let (Some(l), Some(r)) = (column(l), column(r)) else {
            continue;
        };
        let (Some((ln, lp)), Some((rn, rp))) = (trace(&j.left, l), trace(&j.right, r)) else {
            continue;
        };
        if ln != "diaObjectId" || rn != "diaObjectId" {
            continue;
        }
        let (Some(ls), Some(rs)) = (scan_at(&j.left, &lp), scan_at(&j.right, &rp)) else {
            continue;
        };
        let (Some(lt), Some(rt)) = (ppdb_table(ls), ppdb_table(rs)) else {
            continue;
        };
        if !(lt.colocated() && rt.colocated()) {
            continue;
        }
        let left_reads = lt.partitions_read(&ls.filters);
        let right_reads = rt.partitions_read(&rs.filters);
        if let Some(p) = left_reads
            && may_narrow(j, false)
        {
            found.push(Narrow {
                path: [path, &[1], &rp].concat(),
                partitions: p,
            });
        }
        if let Some(p) = right_reads
            && may_narrow(j, true)
        {
            found.push(Narrow {
                path: [path, &[0], &lp].concat(),
                partitions: p,
            });
        }
    }
}
