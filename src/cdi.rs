//! CDI's built-in storage capabilities: a fact about the infrastructure cluster's storage
//! drivers, read by the facts snapshot (to fill a class's claim property sets when no
//! StorageProfile says otherwise) and by the rules (to know what a driver provisions at all).
//!
//! Mirrors CDI `pkg/storagecapabilities/storagecapabilities.go` (`CapabilitiesByProvisionerKey`
//! and `storageClassToProvisionerKeyMapper`), 79 keys at CDI commit c07cdb6fbd18
//! (docs/rules.md §S1). Order inside each entry matters: the first capability is what a
//! DataVolume that requests nothing gets.

use std::collections::BTreeMap;

use crate::resources::{AccessMode, VolumeMode};

use AccessMode::{ReadOnlyMany as ROX, ReadWriteMany as RWX, ReadWriteOnce as RWO};
use VolumeMode::{Block, Filesystem as File};

/// One capability: an access mode with a volume mode.
pub type Capability = (AccessMode, VolumeMode);

const RBD: &[Capability] = &[(RWX, Block), (RWO, Block), (RWO, File)];
const ALL_BUT_RWX_FILE: &[Capability] = &[(RWX, Block), (RWO, Block), (RWO, File), (ROX, Block), (ROX, File)];
const ALL_FS: &[Capability] = &[(RWX, File), (RWO, File), (ROX, File)];
const DELL_BLOCK: &[Capability] = &[(RWX, Block), (RWO, Block), (RWO, File), (ROX, Block)];
const RWO_BLOCK_FS: &[Capability] = &[(RWO, Block), (RWO, File)];
const RWX_BLOCK_FIRST: &[Capability] = &[(RWX, Block), (RWO, Block), (RWO, File)];
const RWO_FS: &[Capability] = &[(RWO, File)];
const RWO_BLOCK: &[Capability] = &[(RWO, Block)];
const RWX_FS: &[Capability] = &[(RWX, File)];
const RWX_FS_RWO_FS: &[Capability] = &[(RWX, File), (RWO, File)];
const PORTWORX: &[Capability] = &[(RWX, Block), (RWX, File), (RWO, Block), (RWO, File)];

/// `CapabilitiesByProvisionerKey`, key for key, in the file's order.
pub const TABLE: &[(&str, &[Capability])] = &[
    // hostpath-provisioner
    ("kubevirt.io.hostpath-provisioner", RWO_FS),
    ("kubevirt.io.hostpath-provisioner/overlay", RWX_FS),
    ("kubevirt.io/hostpath-provisioner", RWO_FS),
    ("k8s.io/minikube-hostpath", RWO_FS),
    // nfs-csi
    ("nfs.csi.k8s.io", RWX_FS),
    ("k8s-sigs.io/nfs-subdir-external-provisioner", RWX_FS),
    // ceph-rbd
    ("kubernetes.io/rbd", RBD),
    ("rbd.csi.ceph.com", RBD),
    ("rook-ceph.rbd.csi.ceph.com", RBD),
    ("openshift-storage.rbd.csi.ceph.com", RBD),
    // ceph-fs
    ("cephfs.csi.ceph.com", RWX_FS_RWO_FS),
    ("rook-ceph.cephfs.csi.ceph.com", RWX_FS_RWO_FS),
    ("openshift-storage.cephfs.csi.ceph.com", RWX_FS_RWO_FS),
    // LINSTOR
    ("linstor.csi.linbit.com", ALL_BUT_RWX_FILE),
    // Dell Unity XT, PowerFlex, PowerScale, PowerMax, PowerStore
    ("csi-unity.dellemc.com", ALL_BUT_RWX_FILE),
    ("csi-unity.dellemc.com/nfs", ALL_FS),
    ("csi-vxflexos.dellemc.com", ALL_BUT_RWX_FILE),
    ("csi-vxflexos.dellemc.com/nfs", ALL_FS),
    ("csi-isilon.dellemc.com", ALL_FS),
    ("csi-powermax.dellemc.com", DELL_BLOCK),
    ("csi-powermax.dellemc.com/nfs", ALL_FS),
    ("csi-powerstore.dellemc.com", DELL_BLOCK),
    ("csi-powerstore.dellemc.com/nfs", ALL_FS),
    // storageos
    ("kubernetes.io/storageos", RWO_FS),
    ("storageos", RWO_FS),
    // AWS EBS
    ("kubernetes.io/aws-ebs", RWO_BLOCK),
    ("ebs.csi.aws.com", RWO_BLOCK),
    ("ebs.csi.aws.com/io1", RWO_BLOCK),
    ("ebs.csi.aws.com/io2", RWX_BLOCK_FIRST),
    ("ebs.csi.aws.com/gp", RWO_BLOCK),
    // AWS EFS
    ("efs.csi.aws.com", RWX_FS_RWO_FS),
    // Azure disk and file
    ("kubernetes.io/azure-disk", RWO_BLOCK),
    ("disk.csi.azure.com", RWO_BLOCK),
    ("kubernetes.io/azure-file", RWX_FS),
    ("file.csi.azure.com", RWX_FS),
    // GCE Persistent Disk
    ("kubernetes.io/gce-pd", RWO_BLOCK_FS),
    ("pd.csi.storage.gke.io", RWO_BLOCK_FS),
    ("pd.csi.storage.gke.io/hyperdisk", RWX_BLOCK_FIRST),
    // Hitachi, HPE, IBM
    ("hspc.csi.hitachi.com", RWX_BLOCK_FIRST),
    ("csi.hpe.com", RWX_BLOCK_FIRST),
    ("spectrumscale.csi.ibm.com", RWX_FS_RWO_FS),
    ("block.csi.ibm.com", RWX_BLOCK_FIRST),
    ("vpc.block.csi.ibm.io", RWO_BLOCK_FS),
    ("vpc.file.csi.ibm.io", RWX_FS_RWO_FS),
    ("vpc.file.csi.ibm.io/dp2", RWX_FS_RWO_FS),
    ("vpc.file.csi.ibm.io/dp2-rwo", RWO_FS),
    ("vpc.file.csi.ibm.io/rfs", RWX_FS_RWO_FS),
    ("vpc.file.csi.ibm.io/rfs-rwo", RWO_FS),
    // Portworx in-tree and CSI
    ("kubernetes.io/portworx-volume/nfs", RWX_FS_RWO_FS),
    ("kubernetes.io/portworx-volume", PORTWORX),
    ("pxd.portworx.com/nfs", RWX_FS_RWO_FS),
    ("pxd.portworx.com", PORTWORX),
    ("pxd.portworx.com/pure_block", RWX_BLOCK_FIRST),
    ("pxd.portworx.com/pure_fa_file", RWX_FS_RWO_FS),
    // NetApp Trident
    ("csi.trident.netapp.io/ontap-nas", RWX_FS_RWO_FS),
    ("csi.trident.netapp.io/ontap-san", &[(RWX, Block)]),
    ("csi.trident.netapp.io/gcnv-flex", RWX_FS_RWO_FS),
    // TopoLVM, OpenStack Cinder and Manila, oVirt
    ("topolvm.cybozu.com", RWO_BLOCK_FS),
    ("topolvm.io", RWO_BLOCK_FS),
    ("cinder.csi.openstack.org", RWO_BLOCK_FS),
    ("manila.csi.openstack.org", RWX_FS),
    ("csi.ovirt.org", RWO_BLOCK_FS),
    // Infinidat
    ("infinibox-csi-driver/iscsiorfibrechannel", RWX_BLOCK_FIRST),
    ("infinibox-csi-driver/nvme", RWX_BLOCK_FIRST),
    ("infinibox-csi-driver/nfs", RWX_FS_RWO_FS),
    // vSphere
    ("csi.vsphere.vmware.com", RWO_BLOCK_FS),
    (
        "csi.vsphere.vmware.com/nfs",
        &[(RWX, File), (RWO, Block), (RWO, File)],
    ),
    // Huawei
    ("csi.huawei.com", ALL_BUT_RWX_FILE),
    ("csi.huawei.com/nfs", ALL_FS),
    // KubeSAN
    (
        "kubesan.gitlab.io",
        &[(RWX, Block), (ROX, Block), (RWO, Block), (RWO, File)],
    ),
    // Longhorn
    ("driver.longhorn.io", RWO_BLOCK),
    ("driver.longhorn.io/migratable", &[(RWX, Block), (RWO, Block)]),
    ("driver.longhorn.io/nfs", RWX_FS_RWO_FS),
    ("driver.longhorn.io/fs", RWO_FS),
    // Oracle cloud
    ("blockvolume.csi.oraclecloud.com", RWX_BLOCK_FIRST),
    // Synology
    ("csi.san.synology.com/iscsi", RWX_BLOCK_FIRST),
    ("csi.san.synology.com/nfs", RWX_FS_RWO_FS),
    ("csi.san.synology.com/smb", RWX_FS_RWO_FS),
    // DirectPV
    ("directpv-min-io", RWO_FS),
];

/// The StorageClass parameters [`provisioner_key`] reads; the cluster caches keep only these.
pub const PARAMETER_KEYS: &[&str] = &[
    "backend",
    "backendType",
    "csi.storage.k8s.io/fstype",
    "fsType",
    "migratable",
    "nfsOptions",
    "overlayCSI",
    "profile",
    "protocol",
    "selector",
    "sharedv4_mount_options",
    "storage_protocol",
    "type",
    "vmState",
];

/// CDI's `kubernetes.io/no-provisioner` (local PVs): capabilities come from existing PVs,
/// which we do not watch, so such classes are treated as unknown (docs/rules.md §S1).
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// The key CDI maps a parameter combination to when it does not recognise it.
pub const UNKNOWN_KEY: &str = "UNKNOWN";

/// Capabilities for a provisioner key, `None` when CDI's table does not know it.
pub fn capabilities(key: &str) -> Option<&'static [Capability]> {
    TABLE.iter().find(|(k, _)| *k == key).map(|(_, caps)| *caps)
}

/// The capabilities CDI's table gives a StorageClass (provisioner and parameters).
pub fn class_capabilities(
    provisioner: &str,
    parameters: &BTreeMap<String, String>,
) -> Option<&'static [Capability]> {
    if provisioner == NO_PROVISIONER {
        return None;
    }
    capabilities(&provisioner_key(provisioner, parameters))
}

/// CDI `storageProvisionerKey`: the provisioner name, or a sub-key picked from parameters
/// by the provisioner's mapper function.
pub fn provisioner_key(provisioner: &str, parameters: &BTreeMap<String, String>) -> String {
    let p = Params(parameters);
    let key = match provisioner {
        "kubevirt.io.hostpath-provisioner" => hpp_key(&p),
        "kubernetes.io/portworx-volume" if p.nfs_mount_options() => "kubernetes.io/portworx-volume/nfs",
        "pxd.portworx.com" => portworx_key(&p),
        "csi.trident.netapp.io" => trident_key(&p),
        "infinibox-csi-driver" => infinibox_key(&p),
        "csi.vsphere.vmware.com" if p.fs_type().contains("nfs") => "csi.vsphere.vmware.com/nfs",
        "csi-unity.dellemc.com" if p.get("protocol").eq_ignore_ascii_case("nfs") => {
            "csi-unity.dellemc.com/nfs"
        }
        "csi-powerstore.dellemc.com" if p.fs_type() == "nfs" => "csi-powerstore.dellemc.com/nfs",
        "csi-vxflexos.dellemc.com" if p.fs_type() == "nfs" => "csi-vxflexos.dellemc.com/nfs",
        "csi-powermax.dellemc.com" if p.fs_type() == "nfs" => "csi-powermax.dellemc.com/nfs",
        "csi.huawei.com" if p.get("protocol") == "nfs" => "csi.huawei.com/nfs",
        "driver.longhorn.io" => longhorn_key(&p),
        "ebs.csi.aws.com" => ebs_key(&p),
        "pd.csi.storage.gke.io" => gce_pd_key(&p),
        "csi.san.synology.com" => synology_key(&p),
        "vpc.file.csi.ibm.io" => ibm_vpc_file_key(&p),
        other => other,
    };
    key.to_owned()
}

struct Params<'a>(&'a BTreeMap<String, String>);

impl Params<'_> {
    /// A parameter's value, "" when absent (Go's map lookup).
    fn get(&self, key: &str) -> &str {
        debug_assert!(PARAMETER_KEYS.contains(&key), "{key} missing from PARAMETER_KEYS");
        self.0.get(key).map(String::as_str).unwrap_or("")
    }
    fn has(&self, key: &str) -> bool {
        debug_assert!(PARAMETER_KEYS.contains(&key), "{key} missing from PARAMETER_KEYS");
        self.0.contains_key(key)
    }
    /// CDI `getFSType`: `csi.storage.k8s.io/fstype`, lower-cased.
    fn fs_type(&self) -> String {
        self.get("csi.storage.k8s.io/fstype").to_ascii_lowercase()
    }
    /// Portworx: `sharedv4_mount_options` split on `,` contains `vers=3.0` and `nolock`.
    fn nfs_mount_options(&self) -> bool {
        let opts: Vec<&str> = self.get("sharedv4_mount_options").split(',').collect();
        opts.contains(&"vers=3.0") && opts.contains(&"nolock")
    }
}

/// HPP: the overlay key whenever `overlayCSI` is present, whatever its value.
fn hpp_key(p: &Params) -> &'static str {
    if p.has("overlayCSI") {
        "kubevirt.io.hostpath-provisioner/overlay"
    } else {
        "kubevirt.io.hostpath-provisioner"
    }
}

/// Portworx CSI: `backend` (when present) decides; otherwise the NFS mount options.
fn portworx_key(p: &Params) -> &'static str {
    if p.has("backend") {
        return match p.get("backend") {
            "pure_block" => "pxd.portworx.com/pure_block",
            "pure_fa_file" => "pxd.portworx.com/pure_fa_file",
            _ => "pxd.portworx.com",
        };
    }
    if p.nfs_mount_options() {
        "pxd.portworx.com/nfs"
    } else {
        "pxd.portworx.com"
    }
}

/// Trident: `backendType` prefixes, then GCNV with a `selector` element `performance=flex`
/// (the selector split like Go's `regexp.MustCompile(`\s*[;,]\s*`).Split(s, -1)`).
fn trident_key(p: &Params) -> &'static str {
    let backend = p.get("backendType");
    if backend.starts_with("ontap-nas") {
        return "csi.trident.netapp.io/ontap-nas";
    }
    if backend.starts_with("ontap-san") {
        return "csi.trident.netapp.io/ontap-san";
    }
    if backend == "google-cloud-netapp-volumes"
        && split_selector(p.get("selector")).any(|s| s == "performance=flex")
    {
        return "csi.trident.netapp.io/gcnv-flex";
    }
    UNKNOWN_KEY
}

/// Go `regexp.Split` with `\s*[;,]\s*`: separators absorb the whitespace around them, but
/// whitespace at the ends of the string (not next to a separator) is kept. Go's `\s` is
/// `[\t\n\f\r ]`.
pub fn split_selector(s: &str) -> impl Iterator<Item = &str> {
    let is_space = |c: char| matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ');
    let bytes = s.as_bytes();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b';' || bytes[i] == b',' {
            let left = s[start..i].trim_end_matches(is_space).len() + start;
            let right = i + 1 + (s[i + 1..].len() - s[i + 1..].trim_start_matches(is_space).len());
            pieces.push(&s[start..left]);
            start = right;
            i = right;
        } else {
            i += 1;
        }
    }
    pieces.push(&s[start..]);
    pieces.into_iter()
}

fn infinibox_key(p: &Params) -> &'static str {
    match p.get("storage_protocol") {
        "iscsi" | "fc" => "infinibox-csi-driver/iscsiorfibrechannel",
        "nvme" => "infinibox-csi-driver/nvme",
        "nfs" | "nfs_treeq" => "infinibox-csi-driver/nfs",
        _ => UNKNOWN_KEY,
    }
}

fn longhorn_key(p: &Params) -> &'static str {
    if p.get("migratable") == "true" {
        "driver.longhorn.io/migratable"
    } else if !p.get("nfsOptions").is_empty() {
        "driver.longhorn.io/nfs"
    } else if !p.get("fsType").is_empty() {
        "driver.longhorn.io/fs"
    } else {
        "driver.longhorn.io"
    }
}

fn ebs_key(p: &Params) -> &'static str {
    match p.get("type") {
        "io1" => "ebs.csi.aws.com/io1",
        "io2" => "ebs.csi.aws.com/io2",
        "gp2" | "gp3" => "ebs.csi.aws.com/gp",
        _ => "ebs.csi.aws.com",
    }
}

fn gce_pd_key(p: &Params) -> &'static str {
    match p.get("type") {
        "hyperdisk-balanced" | "hyperdisk-balanced-high-availability" => "pd.csi.storage.gke.io/hyperdisk",
        _ => "pd.csi.storage.gke.io",
    }
}

/// Synology: by `protocol`; absent or `iscsi` is iSCSI, unknown protocols are `UNKNOWN`.
fn synology_key(p: &Params) -> &'static str {
    match p.get("protocol") {
        "iscsi" | "" => "csi.san.synology.com/iscsi",
        "smb" => "csi.san.synology.com/smb",
        "nfs" | "nfs_treeq" => "csi.san.synology.com/nfs",
        _ => UNKNOWN_KEY,
    }
}

/// IBM VPC File: by `profile` (`rfs`, `dp2`), with `vmState: "true"` picking the RWO variant.
fn ibm_vpc_file_key(p: &Params) -> &'static str {
    let rwo = p.get("vmState") == "true";
    match (p.get("profile"), rwo) {
        ("rfs", true) => "vpc.file.csi.ibm.io/rfs-rwo",
        ("rfs", false) => "vpc.file.csi.ibm.io/rfs",
        ("dp2", true) => "vpc.file.csi.ibm.io/dp2-rwo",
        ("dp2", false) => "vpc.file.csi.ibm.io/dp2",
        _ => "vpc.file.csi.ibm.io",
    }
}
