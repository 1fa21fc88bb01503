//! `state`, `pause` and `resume`.

use super::{Runtime, Status};
use crate::engine::error::Result;

/// The OCI state document of a container.
pub fn state(rt: &Runtime, id: &str) -> Result<oci_spec::runtime::State> {
    Ok(rt.load(id)?.oci_state())
}

/// Freezes every process of a running container (cgroup freezer).
pub fn pause(rt: &Runtime, id: &str) -> Result<()> {
    let _lock = super::lock(&rt.dir(id), id)?;
    let c = rt.load(id)?;
    c.check("pause", Status::can_pause)?;
    c.cgroup()?.freeze()?;
    Ok(())
}

pub fn resume(rt: &Runtime, id: &str) -> Result<()> {
    let _lock = super::lock(&rt.dir(id), id)?;
    let c = rt.load(id)?;
    c.check("resume", Status::can_resume)?;
    c.cgroup()?.thaw()?;
    Ok(())
}
