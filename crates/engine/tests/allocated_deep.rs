//! `Volume::allocated_deep`: data runs through a clone's parent chain, exactly (what NBD's
//! base:allocation reports).

use std::sync::Arc;

use shale_engine::{EngineConfig, Parent, Volume};
use shale_store::{MemoryStore, ObjectStore};

#[test]
fn clone_data_parent_data_and_zeros_over_the_parent() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let c = EngineConfig::default();
    let parent = Volume::open(store.clone(), "p/images/a/", 1 << 20, 1, c.clone(), false).unwrap();
    parent.write(0, &[1u8; 8 * 512]).unwrap();
    parent.write(16 * 512, &[2u8; 8 * 512]).unwrap();
    parent.write_zeroes(40 * 512, 8 * 512).unwrap();
    assert_eq!(parent.allocated_deep(0, 2048), vec![(0, 8), (16, 8)]);
    let parent = Arc::new(parent);
    let kid = Volume::open(store.clone(), "p/images/b/", 1 << 20, 1, c, false).unwrap();
    kid.set_parent(Some(Parent {
        vol: parent.clone(),
        overlap: 32 * 512,
    }));
    kid.write(4 * 512, &[3u8; 2 * 512]).unwrap();
    kid.write_zeroes(16 * 512, 4 * 512).unwrap();
    kid.write(60 * 512, &[4u8; 512]).unwrap();
    // Parent data below the overlap where the kid wrote nothing; the kid's zeros stay holes.
    assert_eq!(kid.allocated_deep(0, 2048), vec![(0, 8), (20, 4), (60, 1)]);
    assert_eq!(kid.allocated_deep(2, 20), vec![(2, 6), (20, 2)]);
    // A smaller overlap cuts the parent's contribution.
    kid.set_parent(Some(Parent {
        vol: parent,
        overlap: 22 * 512 + 100,
    }));
    assert_eq!(kid.allocated_deep(0, 2048), vec![(0, 8), (20, 3), (60, 1)]);
}
