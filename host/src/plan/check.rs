//! Checks of a whole plan, made before anything is applied (when it is made,
//! and again when a saved plan is applied): every effect is granted to the
//! step that emitted it, archive members are safe and unique and have a
//! target, the index comes last, record ids cannot change a request path,
//! and effect ids are unique.
//! All problems are reported at once.
use super::Plan;
use super::effect::Effect;
use std::collections::HashMap;

pub fn check(plan: &Plan) -> Vec<String> {
    let mut problems = Vec::new();
    // Members by normal form (the writer's): `s/./a.json` is `s/a.json`.
    let mut members = crate::archive::MemberSet::default();
    let mut writers: HashMap<String, &str> = HashMap::new();
    let mut last_archive_effect = None;
    let mut index_at = None;
    // The journal and the gates know effects by id: one id, one effect.
    let mut ids = std::collections::HashSet::new();
    for (i, e) in plan.effects.iter().enumerate() {
        let at = format!("effect {} (step `{}`)", e.id, e.step);
        if !ids.insert(e.id.as_str()) {
            problems.push(format!(
                "{at}: the plan has another effect with the id `{}`",
                e.id
            ));
        }
        match plan.step(&e.step) {
            None => problems.push(format!("{at}: the plan has no step `{}`", e.step)),
            Some(step) => {
                if let Err(why) = step.grants.permits(&e.effect) {
                    problems.push(format!("{at}, plugin `{}`: {why}", step.plugin.name));
                }
            }
        }
        if e.depends_on != e.effect.depends_on() {
            problems.push(format!("{at}: its `depends_on` does not match the effect"));
        }
        if let Some(path) = e.effect.archive_path() {
            last_archive_effect = Some(i);
            if matches!(e.effect, Effect::ArchiveAddIndex { .. }) {
                index_at.get_or_insert((i, at.clone()));
            }
            if plan.target.is_none() {
                problems.push(format!(
                    "{at} writes archive member `{}` but the workflow has no `[archive] output_dir`",
                    crate::archive::escaped(path)
                ));
            }
            match members.insert(path) {
                Ok(normal) => {
                    writers.insert(normal, &e.step);
                }
                Err(crate::archive::ArchiveError::Duplicate { normal, .. }) => {
                    let first = writers.get(&normal).copied().unwrap_or_default();
                    let spelled = if normal == path {
                        String::new()
                    } else {
                        format!(" (as `{}`)", crate::archive::escaped(&normal))
                    };
                    problems.push(format!(
                        "archive member `{}`{spelled} is written twice (by steps `{first}` and `{}`)",
                        crate::archive::escaped(path),
                        e.step
                    ));
                }
                Err(err) => problems.push(format!("{at}: {err}")),
            }
        }
        if let Effect::ImsDelete { id, .. } = &e.effect
            && !is_record_id(id)
        {
            problems.push(format!(
                "{at} deletes IMS record `{}`, which is not a record id (letters, digits, `-`, `_`, `.`; at most 128)",
                crate::archive::escaped(id)
            ));
        }
    }
    if let (Some((i, at)), Some(last)) = (index_at, last_archive_effect)
        && i != last
    {
        problems.push(format!(
            "{at} adds an archive index that is not the last archive member"
        ));
    }
    problems
}

/// IMS ids are UUIDs; anything that could change the request path is refused.
/// The same rule as import-core's `ims::id_problem`, which refuses the
/// archive at preflight (the plugins cannot depend on the host).
fn is_record_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && !id.contains("..")
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}
