//! `minictl images`, `rmi`, `tag`.

use clap::Args;
use mini_proto::v1 as pb;

use super::Ctx;
use crate::output::{ago, bytes_decimal, print_json_line, print_str, short_id, Format, Table};

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only ids
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Do not cut ids
    #[arg(long)]
    pub no_trunc: bool,
}

/// `docker.io/library/busybox:latest` → (`busybox`, `latest`), as Docker shows names.
fn repo_tag(name: &str) -> (String, String) {
    let (repo, tag) = match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (name, "latest"),
    };
    let repo = repo
        .strip_prefix("docker.io/library/")
        .or_else(|| repo.strip_prefix("docker.io/"))
        .unwrap_or(repo);
    (repo.to_string(), tag.to_string())
}

impl ImagesArgs {
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let mut c = ctx.client.images.clone();
        let list = match c.list(pb::ListImagesRequest {}).await {
            Ok(r) => r.into_inner().images,
            Err(s) => return ctx.fail(s),
        };
        if self.quiet {
            print_str(
                &list
                    .iter()
                    .map(|i| short_id(&i.id, self.no_trunc) + "\n")
                    .collect::<String>(),
            );
            return 0;
        }
        if ctx.format == Format::Json {
            for i in &list {
                let (r, t) = repo_tag(&i.name);
                print_json_line(&serde_json::json!({
                    "Repository": r, "Tag": t, "ID": i.id, "Name": i.name,
                    "CreatedAt": i.created, "Size": i.size,
                }));
            }
            return 0;
        }
        let mut t = Table::new(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
        for i in &list {
            let (r, tag) = repo_tag(&i.name);
            t.row(vec![
                r,
                tag,
                short_id(&i.id, self.no_trunc),
                if i.created.is_empty() {
                    "N/A".into()
                } else {
                    ago(&i.created)
                },
                bytes_decimal(i.size),
            ]);
        }
        t.print();
        0
    }
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Remove even if containers use it
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

impl RmiArgs {
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let mut c = ctx.client.images.clone();
        let mut code = 0;
        for i in &self.images {
            match c
                .remove(pb::RemoveImageRequest {
                    image: i.clone(),
                    force: self.force,
                })
                .await
            {
                Ok(r) => {
                    let r = r.into_inner();
                    let mut out = String::new();
                    for u in r.untagged {
                        out.push_str(&format!("Untagged: {u}\n"));
                    }
                    for d in r.deleted {
                        out.push_str(&format!("Deleted: {d}\n"));
                    }
                    print_str(&out);
                }
                Err(s) => code = ctx.fail(s),
            }
        }
        code
    }
}

#[derive(Debug, Args)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

impl TagArgs {
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let mut c = ctx.client.images.clone();
        match c
            .tag(pb::TagImageRequest {
                source: self.source.clone(),
                target: self.target.clone(),
            })
            .await
        {
            Ok(_) => 0,
            Err(s) => ctx.fail(s),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_show_like_docker() {
        assert_eq!(
            super::repo_tag("docker.io/library/busybox:latest"),
            ("busybox".into(), "latest".into())
        );
        assert_eq!(
            super::repo_tag("localhost:5000/app:v1"),
            ("localhost:5000/app".into(), "v1".into())
        );
    }
}
