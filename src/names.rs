//! The naming rules of the names that end up in request paths (Google Cloud project, Cloud Run
//! region, service and revision, a GitHub `OWNER/NAME`) and of the health path. A name that breaks
//! its rule could carry `/`, `?`, `#` or `..` into a URL and address something else, so each is
//! checked before any request; the messages say the rule, and the caller names the flag or key.

/// Lowercase ASCII letters, digits and hyphens only.
fn lower_alnum_hyphen(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn starts_with_letter(text: &str) -> bool {
    text.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
}

/// How a refused value is quoted in a message: escaped, so a newline or a control character in it
/// cannot start a line of its own, and cut short.
pub fn quote(text: &str) -> String {
    let short: String = text.chars().take(80).collect();
    let ellipsis = if short.len() < text.len() { "…" } else { "" };
    format!("{:?}{ellipsis}", short)
}

/// A Google Cloud project ID: 6–30 lowercase letters, digits and hyphens, starting with a letter and
/// not ending with a hyphen; the legacy domain-scoped form `example.com:my-project` is accepted too.
pub fn check_project(text: &str) -> Result<(), String> {
    let rule = "a project ID is 6 to 30 lowercase letters, digits and hyphens, starting with a \
                letter and not ending with a hyphen (e.g. loopcloser-prod)";
    let (domain, id) = match text.split_once(':') {
        Some((domain, id)) => (Some(domain), id),
        None => (None, text),
    };
    let domain_ok = domain.is_none_or(|d| {
        !d.is_empty()
            && d.len() <= 253
            && d.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !d.starts_with(['.', '-'])
            && !d.ends_with(['.', '-'])
            && !d.contains("..")
    });
    let id_ok = (6..=30).contains(&id.len())
        && lower_alnum_hyphen(id)
        && starts_with_letter(id)
        && !id.ends_with('-');
    if domain_ok && id_ok {
        Ok(())
    } else {
        Err(format!("{} is not a project ID: {rule}", quote(text)))
    }
}

/// A Cloud Run region (location): lowercase letters, digits and hyphens, 1–63 characters.
pub fn check_region(text: &str) -> Result<(), String> {
    if (1..=63).contains(&text.len())
        && lower_alnum_hyphen(text)
        && starts_with_letter(text)
        && !text.ends_with('-')
    {
        Ok(())
    } else {
        Err(format!(
            "{} is not a region: a region is lowercase letters, digits and hyphens, at most 63 \
             characters (e.g. us-central1)",
            quote(text)
        ))
    }
}

/// A comma list of regions: each a region, none twice, at least one.
pub fn split_regions(text: &str) -> Result<Vec<String>, String> {
    let mut regions: Vec<String> = Vec::new();
    for part in text.split(',').map(str::trim) {
        check_region(part)?;
        if regions.iter().any(|seen| seen == part) {
            return Err(format!(
                "{} is named twice; each region is one wave",
                quote(part)
            ));
        }
        regions.push(part.to_string());
    }
    Ok(regions)
}

/// A Cloud Run service name: lowercase letters, digits and hyphens, starting with a letter, not
/// ending with a hyphen, at most 49 characters.
pub fn check_service(text: &str) -> Result<(), String> {
    if (1..=49).contains(&text.len())
        && lower_alnum_hyphen(text)
        && starts_with_letter(text)
        && !text.ends_with('-')
    {
        Ok(())
    } else {
        Err(format!(
            "{} is not a Cloud Run service name: up to 49 lowercase letters, digits and hyphens, \
             starting with a letter and not ending with a hyphen (e.g. loopcloser-prod)",
            quote(text)
        ))
    }
}

/// A Cloud Run revision name, short form only (`web-00042-abc`): lowercase letters, digits and
/// hyphens, starting with a letter, not ending with a hyphen, at most 63 characters.
pub fn check_revision(text: &str) -> Result<(), String> {
    if (1..=63).contains(&text.len())
        && lower_alnum_hyphen(text)
        && starts_with_letter(text)
        && !text.ends_with('-')
    {
        return Ok(());
    }
    // A full resource name points at a service of its own, which may not be the one addressed by
    // --project/--region/--service: ask for the short name rather than guess.
    let hint = if text.starts_with("projects/") {
        "; give the short name (the part after /revisions/), the service comes from --service"
    } else {
        ""
    };
    Err(format!(
        "{} is not a revision name: up to 63 lowercase letters, digits and hyphens, starting with a \
         letter and not ending with a hyphen (e.g. loopcloser-prod-00042-abc){hint}",
        quote(text)
    ))
}

/// A GitHub repository `OWNER/NAME`: the owner is 1–39 letters, digits and single hyphens, not
/// starting or ending with one; the name is 1–100 letters, digits, `-`, `_` and `.`, and not `.`
/// or `..`. Returns the two parts.
pub fn check_repo(text: &str) -> Result<(&str, &str), String> {
    let owner_ok = |owner: &str| {
        (1..=39).contains(&owner.len())
            && owner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !owner.starts_with('-')
            && !owner.ends_with('-')
            && !owner.contains("--")
    };
    let name_ok = |name: &str| {
        (1..=100).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && name != "."
            && name != ".."
    };
    match text.split_once('/') {
        Some((owner, name)) if owner_ok(owner) && name_ok(name) => Ok((owner, name)),
        _ => Err(format!(
            "--repo must be OWNER/NAME (e.g. loopcloser/app): the owner up to 39 letters, digits \
             and single hyphens, the name up to 100 letters, digits, '-', '_' and '.'; got {}",
            quote(text)
        )),
    }
}

/// The health endpoint's path: it is appended to the revision's own URL, so it must be a path
/// (`/health`, `/healthz?full=1`) and never something that changes the host: no scheme, no `//`
/// prefix, no `..` segment, no backslash, whitespace or control character.
/// An ID token audience: what Cloud Run compares with the token's `aud`, usually a URL such as
/// `https://app.example.com`; never empty, never with whitespace, at most 2 KiB.
pub fn check_audience(text: &str) -> Result<(), String> {
    if text.is_empty()
        || text.len() > 2048
        || text.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(format!(
            "{} is not an audience: expected the URL the service is reached at (or one of its \
             custom audiences), e.g. https://app.example.com, without spaces",
            quote(text)
        ));
    }
    Ok(())
}

pub fn check_health_path(text: &str) -> Result<(), String> {
    let problem = if !text.starts_with('/') {
        Some("it must start with '/'")
    } else if text.starts_with("//") {
        Some("'//' would name another host")
    } else if text.len() > 1024 {
        Some("it is longer than 1024 characters")
    } else if text
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        Some("it contains whitespace, a backslash or a control character")
    } else if text
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .split('/')
        .any(|segment| segment == ".." || segment == "." || decoded_dot_segment(segment))
    {
        Some("it has a '.' or '..' segment")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(format!(
            "{} is not a health path: {problem} (give a path such as /health, never a URL)",
            quote(text)
        )),
    }
}

/// `%2e%2E` and the like: a dot segment once a server decodes it.
fn decoded_dot_segment(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase();
    let decoded = lower.replace("%2e", ".");
    decoded != lower && (decoded == "." || decoded == "..")
}

/// clap value parsers: the value itself, once its rule holds.
pub mod arg {
    pub fn project(text: &str) -> Result<String, String> {
        super::check_project(text).map(|()| text.to_string())
    }

    /// One region, or a comma list of them (a rollout's waves), normalised to `a,b`.
    pub fn regions(text: &str) -> Result<String, String> {
        super::split_regions(text).map(|regions| regions.join(","))
    }

    pub fn service(text: &str) -> Result<String, String> {
        super::check_service(text).map(|()| text.to_string())
    }

    pub fn revision(text: &str) -> Result<String, String> {
        super::check_revision(text).map(|()| text.to_string())
    }

    pub fn repo(text: &str) -> Result<String, String> {
        super::check_repo(text).map(|_| text.to_string())
    }

    pub fn health_path(text: &str) -> Result<String, String> {
        super::check_health_path(text).map(|()| text.to_string())
    }

    pub fn audience(text: &str) -> Result<String, String> {
        super::check_audience(text).map(|()| text.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_names_that_smuggle_url_parts_then_each_rule_refuses_them() {
        for bad in [
            "web?updateMask=traffic",
            "nope/../web",
            "web#x",
            "Web",
            "-web",
            "web-",
            "",
            "web%2f",
            "web\n",
        ] {
            assert!(check_service(bad).is_err(), "service {bad:?}");
            assert!(check_revision(bad).is_err(), "revision {bad:?}");
        }
        for bad in [
            "p/x", "p", "proj", "1project", "project-", "PROJECT", "a:b/c",
        ] {
            assert!(check_project(bad).is_err(), "project {bad:?}");
        }
        for bad in ["us central1", "us/central1", "", "US-CENTRAL1"] {
            assert!(check_region(bad).is_err(), "region {bad:?}");
        }
        assert!(check_service(&"a".repeat(50)).is_err());
        assert!(check_revision(&"a".repeat(64)).is_err());
    }

    #[test]
    fn given_real_names_then_the_rules_accept_them() {
        check_project("loopcloser").unwrap();
        check_project("example.com:loopcloser").unwrap();
        check_region("us-central1").unwrap();
        check_service("loopcloser-prod").unwrap();
        check_service(&"a".repeat(49)).unwrap();
        check_revision("loopcloser-prod-00042-abc").unwrap();
        check_revision(&"a".repeat(63)).unwrap();
    }

    #[test]
    fn given_a_full_revision_resource_name_then_the_short_name_is_asked_for() {
        let message =
            check_revision("projects/p/locations/r/services/s/revisions/s-00001").unwrap_err();
        assert!(message.contains("short name"), "{message}");
    }

    #[test]
    fn given_repos_then_only_owner_slash_name_is_accepted() {
        assert_eq!(
            check_repo("loopcloser/app.v2_x").unwrap(),
            ("loopcloser", "app.v2_x")
        );
        for bad in [
            "a/b/c", "a", "/b", "a/", "a/..", "a/.", "-a/b", "a--b/c", "a b/c", "a/b?x", "a/b#x",
        ] {
            let message = check_repo(bad).unwrap_err();
            assert!(message.contains("--repo"), "{bad}: {message}");
        }
        assert!(check_repo(&format!("{}/b", "a".repeat(40))).is_err());
        assert!(check_repo(&format!("a/{}", "b".repeat(101))).is_err());
    }

    #[test]
    fn given_health_paths_then_only_paths_on_the_same_host_are_accepted() {
        for good in [
            "/health",
            "/",
            "/healthz?full=1",
            "/a/b.json",
            "/v1/status#x",
        ] {
            check_health_path(good).unwrap();
        }
        for bad in [
            "http://169.254.169.254/computeMetadata/v1/",
            "health",
            "//169.254.169.254/x",
            "/../admin",
            "/a/%2e%2e/admin",
            "/a/./b",
            "/health\n::add-mask::x",
            "/he alth",
            "/\\evil",
            "",
        ] {
            assert!(check_health_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refused_values_are_quoted_on_one_line() {
        let message = check_service("web\n::warning::x").unwrap_err();
        assert!(!message.contains('\n'), "{message}");
    }
}
