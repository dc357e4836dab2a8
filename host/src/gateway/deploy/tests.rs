//! A deployment's versions as calls and rollbacks see them.

use super::*;
use crate::manifest::Manifest;

fn version(name: &str) -> Arc<Version> {
    Arc::new(Version::check(Manifest::test_module(name).into()).unwrap())
}

#[tokio::test]
async fn a_version_stays_wanted_while_a_call_started_on_it_runs() {
    let registry = Registry::new(&[]);
    let deployments = Deployments::new(Store::default());
    assert!(deployments.wanted().is_none(), "nothing deployed yet");
    let (v1, v2, v3) = (version("1.js"), version("2.js"), version("3.js"));
    deployments.start_with(v1.clone()).unwrap();
    let mut budget = CallBudget::default();
    let pin = deployments.pin(&mut budget);
    assert_eq!(
        budget.module,
        Some(v1.id),
        "a call is pinned to the current version"
    );
    let mut sub = budget;
    assert!(
        deployments.pin(&mut sub).is_none(),
        "a pinned call keeps its pin"
    );

    deployments
        .activate(v2.clone(), &registry, "deploy")
        .await
        .unwrap();
    deployments
        .activate(v3.clone(), &registry, "deploy")
        .await
        .unwrap();
    let wanted = deployments.wanted().unwrap();
    assert_eq!(wanted.current, Some(v3.id));
    for id in [v1.id, v2.id, v3.id] {
        assert!(wanted.wanted.contains(&id), "{id:?} is wanted");
    }
    drop(pin);
    let wanted = deployments.wanted().unwrap().wanted;
    assert!(
        !wanted.contains(&v1.id),
        "v1 is dropped once its call ended"
    );
    assert!(
        wanted.contains(&v2.id),
        "the previous version stays for a rollback"
    );

    let back = deployments.rollback(&registry).await.unwrap();
    assert_eq!((back.id, back.previous), (v2.id, Some(v3.id)));
    assert_eq!(deployments.current().unwrap().id, v2.id);
}
