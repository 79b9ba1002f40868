//! Partition tables: GPT (512- and 4096-byte sectors) and MBR, and the choice of the
//! root and `/usr` partitions by the Discoverable Partitions Specification.
//!
//! The choice follows systemd's `dissect_image()` (src/shared/dissect-image.c) with the
//! flags portable attach passes (`GENERIC_ROOT`, `REQUIRE_ROOT`, `USR_NO_ROOT`), except
//! where noted at [`select`]. Everything read from the image is untrusted: sizes and
//! offsets are checked before use and nothing is allocated from an unchecked size field.

use std::cmp::Ordering;

use super::probe::{self, FsType};
use super::source::Source;
use crate::arch::{native_arch, secondary_arch};
use crate::verscmp::strverscmp_improved;

/// A partition chosen to be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// 1-based partition number, as `/dev/loopNpX` would name it.
    pub number: u32,
    /// Byte offset and size inside the image.
    pub offset: u64,
    pub size: u64,
    /// GPT partition label (empty for MBR).
    pub label: String,
    /// Human name of the partition type, e.g. `root-x86-64`, `usr-arm64`, `linux-generic`.
    pub type_name: &'static str,
}

/// What the partition table says to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// No partition table: the whole image is one file system.
    Whole,
    /// Partitions chosen by the Discoverable Partitions Specification; at least one is set.
    Parts {
        root: Option<Part>,
        usr: Option<Part>,
    },
}

/// Decide how to read the image in `src`. The error is a one-line reason.
///
/// Order: a GPT (header at byte 512 or 4096), else a file system at offset 0
/// ([`Selection::Whole`]), else an MBR with one bootable Linux partition.
///
/// Deliberate differences from systemd:
/// - root or `/usr` partitions of an architecture that is neither the native nor the
///   secondary one are refused; systemd would fall back to them as a last resort;
/// - two candidates whose labels compare as the same version are refused; systemd
///   silently takes the first one in table order;
/// - a native-architecture root next to a secondary-architecture `/usr` is refused, as
///   systemd 253 and later do; systemd 252 silently ignored that `/usr`;
/// - a GPT whose primary header is damaged is refused; libblkid would try the backup
///   header at the end of the disk;
/// - logical partitions inside an extended MBR partition are not read, and an MBR
///   with an extended partition is refused.
pub fn select(src: &Source) -> Result<Selection, String> {
    if let Some(gpt) = read_gpt(src)? {
        return choose_gpt(&gpt);
    }
    match probe::sniff(src) {
        Ok(FsType::Unknown) => {}
        Ok(_) => return Ok(Selection::Whole),
        Err(e) => return Err(format!("reading the image: {e}")),
    }
    if let Some(selection) = read_mbr(src)? {
        return Ok(selection);
    }
    Err("no partition table or known file system found".to_string())
}

/// The Discoverable Partitions Specification name of a GPT partition type, given in the
/// usual text form (`4f68bce3-e8cd-4db1-96e7-fbcaf984b709`, any case).
pub fn type_name(type_uuid: &str) -> Option<&'static str> {
    let hex: String = type_uuid.chars().filter(|&c| c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let guid = u128::from_str_radix(&hex, 16).ok()?;
    part_type(guid).map(|t| t.name)
}

// --- partition types ---------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Root,
    Usr,
    LinuxGeneric,
    /// Known by name only, so that messages can say what an image holds.
    Other,
}

#[derive(Debug)]
struct PartType {
    /// The type UUID as written in text form, read as one big-endian number.
    guid: u128,
    name: &'static str,
    role: Role,
    arch: Option<&'static str>,
}

const fn t(guid: u128, name: &'static str, role: Role, arch: Option<&'static str>) -> PartType {
    PartType {
        guid,
        name,
        role,
        arch,
    }
}

/// From systemd's src/systemd/sd-gpt.h; names as systemd-repart and the specification
/// spell them.
#[rustfmt::skip]
static PART_TYPES: &[PartType] = &[
    t(0x6523f8ae_3eb1_4e2a_a05a_18b695ae656f, "root-alpha", Role::Root, Some("alpha")),
    t(0xd27f46ed_2919_4cb8_bd25_9531f3c16534, "root-arc", Role::Root, Some("arc")),
    t(0x69dad710_2ce4_4e3c_b16c_21a1d49abed3, "root-arm", Role::Root, Some("arm")),
    t(0xb921b045_1df0_41c3_af44_4c6f280d3fae, "root-arm64", Role::Root, Some("arm64")),
    t(0x993d8d3d_f80e_4225_855a_9daf8ed7ea97, "root-ia64", Role::Root, Some("ia64")),
    t(0x77055800_792c_4f94_b39a_98c91b762bb6, "root-loongarch64", Role::Root, Some("loongarch64")),
    t(0x37c58c8a_d913_4156_a25f_48b1b64e07f0, "root-mips-le", Role::Root, Some("mips-le")),
    t(0x700bda43_7a34_4507_b179_eeb93d7a7ca3, "root-mips64-le", Role::Root, Some("mips64-le")),
    t(0x1aacdb3b_5444_4138_bd9e_e5c2239b2346, "root-parisc", Role::Root, Some("parisc")),
    t(0x1de3f1ef_fa98_47b5_8dcd_4a860a654d78, "root-ppc", Role::Root, Some("ppc")),
    t(0x912ade1d_a839_4913_8964_a10eee08fbd2, "root-ppc64", Role::Root, Some("ppc64")),
    t(0xc31c45e6_3f39_412e_80fb_4809c4980599, "root-ppc64-le", Role::Root, Some("ppc64-le")),
    t(0x60d5a7fe_8e7d_435c_b714_3dd8162144e1, "root-riscv32", Role::Root, Some("riscv32")),
    t(0x72ec70a6_cf74_40e6_bd49_4bda08e8f224, "root-riscv64", Role::Root, Some("riscv64")),
    t(0x08a7acea_624c_4a20_91e8_6e0fa67d23f9, "root-s390", Role::Root, Some("s390")),
    t(0x5eead9a9_fe09_4a1e_a1d7_520d00531306, "root-s390x", Role::Root, Some("s390x")),
    t(0xc50cdd70_3862_4cc3_90e1_809a8c93ee2c, "root-tilegx", Role::Root, Some("tilegx")),
    t(0x44479540_f297_41b2_9af7_d131d5f0458a, "root-x86", Role::Root, Some("x86")),
    t(0x4f68bce3_e8cd_4db1_96e7_fbcaf984b709, "root-x86-64", Role::Root, Some("x86-64")),
    t(0xe18cf08c_33ec_4c0d_8246_c6c6fb3da024, "usr-alpha", Role::Usr, Some("alpha")),
    t(0x7978a683_6316_4922_bbee_38bff5a2fecc, "usr-arc", Role::Usr, Some("arc")),
    t(0x7d0359a3_02b3_4f0a_865c_654403e70625, "usr-arm", Role::Usr, Some("arm")),
    t(0xb0e01050_ee5f_4390_949a_9101b17104e9, "usr-arm64", Role::Usr, Some("arm64")),
    t(0x4301d2a6_4e3b_4b2a_bb94_9e0b2c4225ea, "usr-ia64", Role::Usr, Some("ia64")),
    t(0xe611c702_575c_4cbe_9a46_434fa0bf7e3f, "usr-loongarch64", Role::Usr, Some("loongarch64")),
    t(0x0f4868e9_9952_4706_979f_3ed3a473e947, "usr-mips-le", Role::Usr, Some("mips-le")),
    t(0xc97c1f32_ba06_40b4_9f22_236061b08aa8, "usr-mips64-le", Role::Usr, Some("mips64-le")),
    t(0xdc4a4480_6917_4262_a4ec_db9384949f25, "usr-parisc", Role::Usr, Some("parisc")),
    t(0x7d14fec5_cc71_415d_9d6c_06bf0b3c3eaf, "usr-ppc", Role::Usr, Some("ppc")),
    t(0x2c9739e2_f068_46b3_9fd0_01c5a9afbcca, "usr-ppc64", Role::Usr, Some("ppc64")),
    t(0x15bb03af_77e7_4d4a_b12b_c0d084f7491c, "usr-ppc64-le", Role::Usr, Some("ppc64-le")),
    t(0xb933fb22_5c3f_4f91_af90_e2bb0fa50702, "usr-riscv32", Role::Usr, Some("riscv32")),
    t(0xbeaec34b_8442_439b_a40b_984381ed097d, "usr-riscv64", Role::Usr, Some("riscv64")),
    t(0xcd0f869b_d0fb_4ca0_b141_9ea87cc78d66, "usr-s390", Role::Usr, Some("s390")),
    t(0x8a4f5770_50aa_4ed3_874a_99b710db6fea, "usr-s390x", Role::Usr, Some("s390x")),
    t(0x55497029_c7c1_44cc_aa39_815ed1558630, "usr-tilegx", Role::Usr, Some("tilegx")),
    t(0x75250d76_8cc6_458e_bd66_bd47cc81a812, "usr-x86", Role::Usr, Some("x86")),
    t(0x8484680c_9521_48c6_9c11_b0720656f69e, "usr-x86-64", Role::Usr, Some("x86-64")),
    t(0xfc56d9e9_e6e5_4c06_be32_e74407ce09a5, "root-alpha-verity", Role::Other, Some("alpha")),
    t(0x24b2d975_0f97_4521_afa1_cd531e421b8d, "root-arc-verity", Role::Other, Some("arc")),
    t(0x7386cdf2_203c_47a9_a498_f2ecce45a2d6, "root-arm-verity", Role::Other, Some("arm")),
    t(0xdf3300ce_d69f_4c92_978c_9bfb0f38d820, "root-arm64-verity", Role::Other, Some("arm64")),
    t(0x86ed10d5_b607_45bb_8957_d350f23d0571, "root-ia64-verity", Role::Other, Some("ia64")),
    t(0xf3393b22_e9af_4613_a948_9d3bfbd0c535, "root-loongarch64-verity", Role::Other, Some("loongarch64")),
    t(0xd7d150d2_2a04_4a33_8f12_16651205ff7b, "root-mips-le-verity", Role::Other, Some("mips-le")),
    t(0x16b417f8_3e06_4f57_8dd2_9b5232f41aa6, "root-mips64-le-verity", Role::Other, Some("mips64-le")),
    t(0xd212a430_fbc5_49f9_a983_a7feef2b8d0e, "root-parisc-verity", Role::Other, Some("parisc")),
    t(0x906bd944_4589_4aae_a4e4_dd983917446a, "root-ppc64-le-verity", Role::Other, Some("ppc64-le")),
    t(0x9225a9a3_3c19_4d89_b4f6_eeff88f17631, "root-ppc64-verity", Role::Other, Some("ppc64")),
    t(0x98cfe649_1588_46dc_b2f0_add147424925, "root-ppc-verity", Role::Other, Some("ppc")),
    t(0xae0253be_1167_4007_ac68_43926c14c5de, "root-riscv32-verity", Role::Other, Some("riscv32")),
    t(0xb6ed5582_440b_4209_b8da_5ff7c419ea3d, "root-riscv64-verity", Role::Other, Some("riscv64")),
    t(0x7ac63b47_b25c_463b_8df8_b4a94e6c90e1, "root-s390-verity", Role::Other, Some("s390")),
    t(0xb325bfbe_c7be_4ab8_8357_139e652d2f6b, "root-s390x-verity", Role::Other, Some("s390x")),
    t(0x966061ec_28e4_4b2e_b4a5_1f0a825a1d84, "root-tilegx-verity", Role::Other, Some("tilegx")),
    t(0x2c7357ed_ebd2_46d9_aec1_23d437ec2bf5, "root-x86-64-verity", Role::Other, Some("x86-64")),
    t(0xd13c5d3b_b5d1_422a_b29f_9454fdc89d76, "root-x86-verity", Role::Other, Some("x86")),
    t(0x8cce0d25_c0d0_4a44_bd87_46331bf1df67, "usr-alpha-verity", Role::Other, Some("alpha")),
    t(0xfca0598c_d880_4591_8c16_4eda05c7347c, "usr-arc-verity", Role::Other, Some("arc")),
    t(0xc215d751_7bcd_4649_be90_6627490a4c05, "usr-arm-verity", Role::Other, Some("arm")),
    t(0x6e11a4e7_fbca_4ded_b9e9_e1a512bb664e, "usr-arm64-verity", Role::Other, Some("arm64")),
    t(0x6a491e03_3be7_4545_8e38_83320e0ea880, "usr-ia64-verity", Role::Other, Some("ia64")),
    t(0xf46b2c26_59ae_48f0_9106_c50ed47f673d, "usr-loongarch64-verity", Role::Other, Some("loongarch64")),
    t(0x46b98d8d_b55c_4e8f_aab3_37fca7f80752, "usr-mips-le-verity", Role::Other, Some("mips-le")),
    t(0x3c3d61fe_b5f3_414d_bb71_8739a694a4ef, "usr-mips64-le-verity", Role::Other, Some("mips64-le")),
    t(0x5843d618_ec37_48d7_9f12_cea8e08768b2, "usr-parisc-verity", Role::Other, Some("parisc")),
    t(0xee2b9983_21e8_4153_86d9_b6901a54d1ce, "usr-ppc64-le-verity", Role::Other, Some("ppc64-le")),
    t(0xbdb528a5_a259_475f_a87d_da53fa736a07, "usr-ppc64-verity", Role::Other, Some("ppc64")),
    t(0xdf765d00_270e_49e5_bc75_f47bb2118b09, "usr-ppc-verity", Role::Other, Some("ppc")),
    t(0xcb1ee4e3_8cd0_4136_a0a4_aa61a32e8730, "usr-riscv32-verity", Role::Other, Some("riscv32")),
    t(0x8f1056be_9b05_47c4_81d6_be53128e5b54, "usr-riscv64-verity", Role::Other, Some("riscv64")),
    t(0xb663c618_e7bc_4d6d_90aa_11b756bb1797, "usr-s390-verity", Role::Other, Some("s390")),
    t(0x31741cc4_1a2a_4111_a581_e00b447d2d06, "usr-s390x-verity", Role::Other, Some("s390x")),
    t(0x2fb4bf56_07fa_42da_8132_6b139f2026ae, "usr-tilegx-verity", Role::Other, Some("tilegx")),
    t(0x77ff5f63_e7b6_4633_acf4_1565b864c0e6, "usr-x86-64-verity", Role::Other, Some("x86-64")),
    t(0x8f461b0d_14ee_4e81_9aa9_049b6fb97abd, "usr-x86-verity", Role::Other, Some("x86")),
    t(0xd46495b7_a053_414f_80f7_700c99921ef8, "root-alpha-verity-sig", Role::Other, Some("alpha")),
    t(0x143a70ba_cbd3_4f06_919f_6c05683a78bc, "root-arc-verity-sig", Role::Other, Some("arc")),
    t(0x42b0455f_eb11_491d_98d3_56145ba9d037, "root-arm-verity-sig", Role::Other, Some("arm")),
    t(0x6db69de6_29f4_4758_a7a5_962190f00ce3, "root-arm64-verity-sig", Role::Other, Some("arm64")),
    t(0xe98b36ee_32ba_4882_9b12_0ce14655f46a, "root-ia64-verity-sig", Role::Other, Some("ia64")),
    t(0x5afb67eb_ecc8_4f85_ae8e_ac1e7c50e7d0, "root-loongarch64-verity-sig", Role::Other, Some("loongarch64")),
    t(0xc919cc1f_4456_4eff_918c_f75e94525ca5, "root-mips-le-verity-sig", Role::Other, Some("mips-le")),
    t(0x904e58ef_5c65_4a31_9c57_6af5fc7c5de7, "root-mips64-le-verity-sig", Role::Other, Some("mips64-le")),
    t(0x15de6170_65d3_431c_916e_b0dcd8393f25, "root-parisc-verity-sig", Role::Other, Some("parisc")),
    t(0xd4a236e7_e873_4c07_bf1d_bf6cf7f1c3c6, "root-ppc64-le-verity-sig", Role::Other, Some("ppc64-le")),
    t(0xf5e2c20c_45b2_4ffa_bce9_2a60737e1aaf, "root-ppc64-verity-sig", Role::Other, Some("ppc64")),
    t(0x1b31b5aa_add9_463a_b2ed_bd467fc857e7, "root-ppc-verity-sig", Role::Other, Some("ppc")),
    t(0x3a112a75_8729_4380_b4cf_764d79934448, "root-riscv32-verity-sig", Role::Other, Some("riscv32")),
    t(0xefe0f087_ea8d_4469_821a_4c2a96a8386a, "root-riscv64-verity-sig", Role::Other, Some("riscv64")),
    t(0x3482388e_4254_435a_a241_766a065f9960, "root-s390-verity-sig", Role::Other, Some("s390")),
    t(0xc80187a5_73a3_491a_901a_017c3fa953e9, "root-s390x-verity-sig", Role::Other, Some("s390x")),
    t(0xb3671439_97b0_4a53_90f7_2d5a8f3ad47b, "root-tilegx-verity-sig", Role::Other, Some("tilegx")),
    t(0x41092b05_9fc8_4523_994f_2def0408b176, "root-x86-64-verity-sig", Role::Other, Some("x86-64")),
    t(0x5996fc05_109c_48de_808b_23fa0830b676, "root-x86-verity-sig", Role::Other, Some("x86")),
    t(0x5c6e1c76_076a_457a_a0fe_f3b4cd21ce6e, "usr-alpha-verity-sig", Role::Other, Some("alpha")),
    t(0x94f9a9a1_9971_427a_a400_50cb297f0f35, "usr-arc-verity-sig", Role::Other, Some("arc")),
    t(0xd7ff812f_37d1_4902_a810_d76ba57b975a, "usr-arm-verity-sig", Role::Other, Some("arm")),
    t(0xc23ce4ff_44bd_4b00_b2d4_b41b3419e02a, "usr-arm64-verity-sig", Role::Other, Some("arm64")),
    t(0x8de58bc2_2a43_460d_b14e_a76e4a17b47f, "usr-ia64-verity-sig", Role::Other, Some("ia64")),
    t(0xb024f315_d330_444c_8461_44bbde524e99, "usr-loongarch64-verity-sig", Role::Other, Some("loongarch64")),
    t(0x3e23ca0b_a4bc_4b4e_8087_5ab6a26aa8a9, "usr-mips-le-verity-sig", Role::Other, Some("mips-le")),
    t(0xf2c2c7ee_adcc_4351_b5c6_ee9816b66e16, "usr-mips64-le-verity-sig", Role::Other, Some("mips64-le")),
    t(0x450dd7d1_3224_45ec_9cf2_a43a346d71ee, "usr-parisc-verity-sig", Role::Other, Some("parisc")),
    t(0xc8bfbd1e_268e_4521_8bba_bf314c399557, "usr-ppc64-le-verity-sig", Role::Other, Some("ppc64-le")),
    t(0x0b888863_d7f8_4d9e_9766_239fce4d58af, "usr-ppc64-verity-sig", Role::Other, Some("ppc64")),
    t(0x7007891d_d371_4a80_86a4_5cb875b9302e, "usr-ppc-verity-sig", Role::Other, Some("ppc")),
    t(0xc3836a13_3137_45ba_b583_b16c50fe5eb4, "usr-riscv32-verity-sig", Role::Other, Some("riscv32")),
    t(0xd2f9000a_7a18_453f_b5cd_4d32f77a7b32, "usr-riscv64-verity-sig", Role::Other, Some("riscv64")),
    t(0x17440e4f_a8d0_467f_a46e_3912ae6ef2c5, "usr-s390-verity-sig", Role::Other, Some("s390")),
    t(0x3f324816_667b_46ae_86ee_9b0c0c6c11b4, "usr-s390x-verity-sig", Role::Other, Some("s390x")),
    t(0x4ede75e2_6ccc_4cc8_b9c7_70334b087510, "usr-tilegx-verity-sig", Role::Other, Some("tilegx")),
    t(0xe7bb33fb_06cf_4e81_8273_e543b413e2e2, "usr-x86-64-verity-sig", Role::Other, Some("x86-64")),
    t(0x974a71c0_de41_43c3_be5d_5c5ccd1ad2c0, "usr-x86-verity-sig", Role::Other, Some("x86")),
    t(0xc12a7328_f81f_11d2_ba4b_00a0c93ec93b, "esp", Role::Other, None),
    t(0xbc13c2ff_59e6_4262_a352_b275fd6f7172, "xbootldr", Role::Other, None),
    t(0x0657fd6d_a4ab_43c4_84e5_0933c84b4f4f, "swap", Role::Other, None),
    t(0x933ac7e1_2eb4_4f13_b844_0e14e2aef915, "home", Role::Other, None),
    t(0x3b8f8425_20e0_4f3b_907f_1a25a76f98e8, "srv", Role::Other, None),
    t(0x4d21b016_b534_45c2_a9fb_5c16e091fd2d, "var", Role::Other, None),
    t(0x7ec6f557_3bc5_4aca_b293_16ef5df639d1, "tmp", Role::Other, None),
    t(0x773f91ef_66d4_49b5_bd83_d683bf40ad16, "user-home", Role::Other, None),
    t(0x0fc63daf_8483_4772_8e79_3d69d8477de4, "linux-generic", Role::LinuxGeneric, None),
];

fn part_type(guid: u128) -> Option<&'static PartType> {
    PART_TYPES.iter().find(|t| t.guid == guid)
}

/// A GPT type GUID in its usual text form.
fn guid_text(guid: u128) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        guid >> 96,
        (guid >> 80) & 0xffff,
        (guid >> 64) & 0xffff,
        (guid >> 48) & 0xffff,
        guid & 0xffff_ffff_ffff
    )
}

// --- little helpers for on-disk fields ---------------------------------------------

/// `N` bytes at `off`, or `None` past the end of `buf`.
fn bytes<const N: usize>(buf: &[u8], off: usize) -> Option<[u8; N]> {
    buf.get(off..)?.first_chunk::<N>().copied()
}

fn le16(buf: &[u8], off: usize) -> Option<u16> {
    bytes(buf, off).map(u16::from_le_bytes)
}

fn le32(buf: &[u8], off: usize) -> Option<u32> {
    bytes(buf, off).map(u32::from_le_bytes)
}

fn le64(buf: &[u8], off: usize) -> Option<u64> {
    bytes(buf, off).map(u64::from_le_bytes)
}

/// A GUID as stored on disk: the first three fields little-endian, the rest big-endian.
fn guid_at(buf: &[u8], off: usize) -> Option<u128> {
    let d1 = le32(buf, off)?;
    let d2 = le16(buf, off.checked_add(4)?)?;
    let d3 = le16(buf, off.checked_add(6)?)?;
    let d4: [u8; 8] = bytes(buf, off.checked_add(8)?)?;
    Some(
        (u128::from(d1) << 96)
            | (u128::from(d2) << 80)
            | (u128::from(d3) << 64)
            | u128::from(u64::from_be_bytes(d4)),
    )
}

static CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// The CRC-32 of IEEE 802.3 (zlib's `crc32`), which the UEFI specification uses for GPT.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = CRC32_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

fn read_err(e: std::io::Error) -> String {
    format!("reading the partition table: {e}")
}

// --- GPT ---------------------------------------------------------------------------

const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
/// Size of the header fields defined by UEFI 2.x; `header_size` may be larger.
const GPT_HEADER_MIN: u32 = 92;
/// The CRC of the header is computed with its own field zeroed.
const GPT_HEADER_CRC_OFFSET: usize = 16;
const GPT_ENTRY_MIN: u32 = 128;
const GPT_ENTRY_MAX: u32 = 4096;
/// Real tables have 128 entries; anything near this is hostile or broken.
const GPT_MAX_ENTRIES: u32 = 16_384;
/// Bounds the one allocation whose size comes from the disk.
const GPT_MAX_ARRAY_BYTES: u64 = 4 << 20;
const GPT_LABEL_OFFSET: usize = 56;
const GPT_LABEL_UNITS: usize = 36;
/// UEFI 2.x "GPT partition entry attributes": bit 63 is the DPS "do not mount
/// automatically" flag, honoured for root, /usr and generic partitions.
const GPT_FLAG_NO_AUTO: u64 = 1 << 63;

/// Header fields after the signature check.
struct GptHeader {
    header_size: u32,
    header_crc: u32,
    my_lba: u64,
    first_usable: u64,
    last_usable: u64,
    entries_lba: u64,
    entry_count: u32,
    entry_size: u32,
    entries_crc: u32,
}

impl GptHeader {
    fn parse(b: &[u8]) -> Option<GptHeader> {
        Some(GptHeader {
            header_size: le32(b, 12)?,
            header_crc: le32(b, 16)?,
            my_lba: le64(b, 24)?,
            first_usable: le64(b, 40)?,
            last_usable: le64(b, 48)?,
            entries_lba: le64(b, 72)?,
            entry_count: le32(b, 80)?,
            entry_size: le32(b, 84)?,
            entries_crc: le32(b, 88)?,
        })
    }
}

/// A used GPT entry whose extent was checked against the image.
#[derive(Debug)]
struct GptEntry {
    number: u32,
    type_guid: u128,
    /// The unique partition GUID, which a verity root hash names (see [`verity_parts`]).
    uuid: u128,
    first_lba: u64,
    last_lba: u64,
    attrs: u64,
    label: String,
}

impl GptEntry {
    fn no_auto(&self) -> bool {
        self.attrs & GPT_FLAG_NO_AUTO != 0
    }

    fn part_type(&self) -> Option<&'static PartType> {
        part_type(self.type_guid)
    }

    fn type_text(&self) -> String {
        match self.part_type() {
            Some(t) => t.name.to_string(),
            None => guid_text(self.type_guid),
        }
    }
}

struct Gpt {
    sector_size: u64,
    entries: Vec<GptEntry>,
}

/// The GPT of the image, trying both sector sizes the way systemd's
/// `probe_sector_size()` does; `None` when there is no GPT signature at all.
fn read_gpt(src: &Source) -> Result<Option<Gpt>, String> {
    let mut found: Option<Gpt> = None;
    let mut first_error = None;
    for sector_size in [512u64, 4096] {
        match read_gpt_at(src, sector_size) {
            Ok(None) => {}
            Ok(Some(gpt)) => {
                if found.is_some() {
                    return Err("valid GPT headers for both 512- and 4096-byte sectors".into());
                }
                found = Some(gpt);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match (found, first_error) {
        (Some(gpt), _) => Ok(Some(gpt)),
        (None, Some(e)) => Err(e),
        (None, None) => Ok(None),
    }
}

fn read_gpt_at(src: &Source, sector_size: u64) -> Result<Option<Gpt>, String> {
    if src.len() <= sector_size {
        return Ok(None);
    }
    // A header never exceeds its sector, so one read covers it.
    let sector = src
        .read_vec(sector_size, sector_size as usize)
        .map_err(read_err)?;
    if sector.first_chunk::<8>() != Some(GPT_SIGNATURE) {
        return Ok(None);
    }
    let hdr = GptHeader::parse(&sector).ok_or_else(|| {
        format!("GPT header at byte {sector_size} is cut off by the end of the image")
    })?;
    let at = format!("GPT header at byte {sector_size}");
    if hdr.header_size < GPT_HEADER_MIN || u64::from(hdr.header_size) > sector_size {
        return Err(format!(
            "{at} has an invalid size of {} bytes",
            hdr.header_size
        ));
    }
    let mut covered = sector
        .get(..hdr.header_size as usize)
        .ok_or_else(|| format!("{at} is cut off by the end of the image"))?
        .to_vec();
    if let Some(crc) = covered.get_mut(GPT_HEADER_CRC_OFFSET..GPT_HEADER_CRC_OFFSET + 4) {
        crc.fill(0);
    }
    if crc32(&covered) != hdr.header_crc {
        return Err(format!("{at} has a bad CRC32"));
    }
    if hdr.my_lba != 1 {
        return Err(format!(
            "{at} claims to be at LBA {} instead of 1",
            hdr.my_lba
        ));
    }

    let size = hdr.entry_size;
    if !(GPT_ENTRY_MIN..=GPT_ENTRY_MAX).contains(&size) || !size.is_power_of_two() {
        return Err(format!(
            "GPT partition entry size {size} is not 128 times a power of two up to {GPT_ENTRY_MAX}"
        ));
    }
    if hdr.entry_count > GPT_MAX_ENTRIES {
        return Err(format!(
            "GPT claims {} partition entries, more than the {GPT_MAX_ENTRIES} accepted",
            hdr.entry_count
        ));
    }
    let array_len = u64::from(hdr.entry_count).saturating_mul(u64::from(size));
    if array_len > GPT_MAX_ARRAY_BYTES {
        return Err(format!(
            "GPT partition entry array of {array_len} bytes is larger than {GPT_MAX_ARRAY_BYTES}"
        ));
    }
    if hdr.entries_lba < 2 {
        return Err(format!(
            "GPT partition entry array at LBA {} overlaps the header",
            hdr.entries_lba
        ));
    }
    let array_start = hdr.entries_lba.checked_mul(sector_size).ok_or_else(|| {
        format!(
            "GPT partition entry array LBA {} is out of range",
            hdr.entries_lba
        )
    })?;
    let array_end = array_start
        .checked_add(array_len)
        .filter(|&end| end <= src.len());
    if array_end.is_none() {
        return Err(format!(
            "GPT partition entry array ({array_len} bytes at byte {array_start}) extends past the end of the image ({} bytes)",
            src.len()
        ));
    }
    let mut array = vec![0u8; array_len as usize];
    src.read_exact_at(&mut array, array_start)
        .map_err(read_err)?;
    if crc32(&array) != hdr.entries_crc {
        return Err("GPT partition entry array has a bad CRC32".to_string());
    }
    if hdr.first_usable > hdr.last_usable {
        return Err(format!(
            "GPT usable area is empty (first LBA {} after last LBA {})",
            hdr.first_usable, hdr.last_usable
        ));
    }

    let image_sectors = src.len() / sector_size;
    let mut entries = Vec::new();
    for (index, raw) in array.chunks_exact(size as usize).enumerate() {
        let (Some(type_guid), Some(uuid), Some(first_lba), Some(last_lba), Some(attrs)) = (
            guid_at(raw, 0),
            guid_at(raw, 16),
            le64(raw, 32),
            le64(raw, 40),
            le64(raw, 48),
        ) else {
            // chunks_exact yields at least GPT_ENTRY_MIN bytes, so this is unreachable.
            return Err("GPT partition entry is too short".to_string());
        };
        if type_guid == 0 {
            continue;
        }
        // index < GPT_MAX_ENTRIES, so it fits.
        let number = u32::try_from(index).unwrap_or(u32::MAX).saturating_add(1);
        if first_lba > last_lba {
            return Err(format!(
                "partition {number} ends (LBA {last_lba}) before it starts (LBA {first_lba})"
            ));
        }
        if last_lba >= image_sectors {
            return Err(format!(
                "partition {number} extends past the end of the image"
            ));
        }
        if first_lba < hdr.first_usable || last_lba > hdr.last_usable {
            return Err(format!(
                "partition {number} (LBA {first_lba}..={last_lba}) lies outside the usable area (LBA {}..={})",
                hdr.first_usable, hdr.last_usable
            ));
        }
        entries.push(GptEntry {
            number,
            type_guid,
            uuid,
            first_lba,
            last_lba,
            attrs,
            label: label_at(raw),
        });
    }

    let mut by_start: Vec<&GptEntry> = entries.iter().collect();
    by_start.sort_by_key(|e| e.first_lba);
    // Sorted by start, any overlap shows up between neighbours.
    for pair in by_start.windows(2) {
        if let [a, b] = pair
            && b.first_lba <= a.last_lba
        {
            let (lo, hi) = (a.number.min(b.number), a.number.max(b.number));
            return Err(format!("partitions {lo} and {hi} overlap"));
        }
    }

    Ok(Some(Gpt {
        sector_size,
        entries,
    }))
}

/// The UTF-16LE partition name, up to its first NUL; unpaired surrogates become U+FFFD.
fn label_at(raw: &[u8]) -> String {
    let units = (0..GPT_LABEL_UNITS)
        .map_while(|i| le16(raw, GPT_LABEL_OFFSET + 2 * i))
        .take_while(|&u| u != 0);
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

fn gpt_part(gpt: &Gpt, e: &GptEntry, type_name: &'static str) -> Result<Part, String> {
    let range = || -> Option<(u64, u64)> {
        let offset = e.first_lba.checked_mul(gpt.sector_size)?;
        let sectors = e.last_lba.checked_sub(e.first_lba)?.checked_add(1)?;
        Some((offset, sectors.checked_mul(gpt.sector_size)?))
    };
    let (offset, size) =
        range().ok_or_else(|| format!("partition {} is out of range", e.number))?;
    Ok(Part {
        number: e.number,
        offset,
        size,
        label: e.label.clone(),
        type_name,
    })
}

/// Root or /usr: the native architecture's partitions, else the secondary one's; among
/// those the newest label wins, which is how DPS images do A/B updates.
fn pick<'a>(
    gpt: &'a Gpt,
    role: Role,
    what: &str,
) -> Result<Option<(&'a GptEntry, &'static PartType)>, String> {
    for arch in [native_arch(), secondary_arch()].into_iter().flatten() {
        let mut best: Option<(&GptEntry, &'static PartType)> = None;
        let mut tie: Option<&GptEntry> = None;
        for e in gpt.entries.iter().filter(|e| !e.no_auto()) {
            let Some(pt) = e
                .part_type()
                .filter(|t| t.role == role && t.arch == Some(arch))
            else {
                continue;
            };
            match best {
                None => best = Some((e, pt)),
                Some((b, _)) => match strverscmp_improved(e.label.as_bytes(), b.label.as_bytes()) {
                    Ordering::Greater => {
                        best = Some((e, pt));
                        tie = None;
                    }
                    Ordering::Equal => tie = Some(e),
                    Ordering::Less => {}
                },
            }
        }
        if let (Some((b, _)), Some(t)) = (best, tie) {
            return Err(format!(
                "multiple suitable {what} partitions: {} {:?} and {} {:?} have the same version",
                b.number, b.label, t.number, t.label
            ));
        }
        if best.is_some() {
            return Ok(best);
        }
    }
    Ok(None)
}

/// At most this many partitions are named in an error message, to keep it one line.
const MAX_LISTED: usize = 16;

fn found_list(gpt: &Gpt) -> String {
    if gpt.entries.is_empty() {
        return "the partition table is empty".to_string();
    }
    let mut names: Vec<String> = gpt
        .entries
        .iter()
        .take(MAX_LISTED)
        .map(|e| {
            let relevant = e.part_type().is_some_and(|t| t.role != Role::Other);
            if relevant && e.no_auto() {
                format!("{} (no-auto)", e.type_text())
            } else {
                e.type_text()
            }
        })
        .collect();
    if gpt.entries.len() > MAX_LISTED {
        names.push(format!("and {} more", gpt.entries.len() - MAX_LISTED));
    }
    format!("partitions found: {}", names.join(", "))
}

fn choose_gpt(gpt: &Gpt) -> Result<Selection, String> {
    let root = pick(gpt, Role::Root, "root")?;
    let usr = pick(gpt, Role::Usr, "/usr")?;
    if let (Some((r, rt)), Some((u, ut))) = (root, usr)
        && rt.arch != ut.arch
    {
        return Err(format!(
            "root partition {} ({}) and /usr partition {} ({}) are for different architectures",
            r.number, rt.name, u.number, ut.name
        ));
    }
    if root.is_some() || usr.is_some() {
        let root = root.map(|(e, t)| gpt_part(gpt, e, t.name)).transpose()?;
        let usr = usr.map(|(e, t)| gpt_part(gpt, e, t.name)).transpose()?;
        return Ok(Selection::Parts { root, usr });
    }

    let arch = native_arch().unwrap_or(std::env::consts::ARCH);
    // A typed root or /usr of a foreign architecture means the image is for another
    // machine, so a generic partition next to it is not its root.
    let foreign = gpt.entries.iter().any(|e| {
        !e.no_auto()
            && e.part_type()
                .is_some_and(|t| matches!(t.role, Role::Root | Role::Usr))
    });
    let generic: Vec<&GptEntry> = gpt
        .entries
        .iter()
        .filter(|e| !e.no_auto() && e.part_type().is_some_and(|t| t.role == Role::LinuxGeneric))
        .collect();
    match generic.as_slice() {
        [only] if !foreign => {
            let root = gpt_part(gpt, only, "linux-generic")?;
            Ok(Selection::Parts {
                root: Some(root),
                usr: None,
            })
        }
        [_, _, ..] if !foreign => {
            let numbers: Vec<String> = generic
                .iter()
                .take(MAX_LISTED)
                .map(|e| e.number.to_string())
                .collect();
            Err(format!(
                "multiple generic Linux partitions ({}) and no root or /usr partition for {arch}",
                numbers.join(", ")
            ))
        }
        _ => Err(format!(
            "no root or /usr partition for {arch} ({})",
            found_list(gpt)
        )),
    }
}

// --- dm-verity partitions ----------------------------------------------------------

/// The file system a root hash known before dissection belongs to: a `.roothash` file
/// gives one for the root partition, a `.usrhash` file one for `/usr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFor {
    Root,
    Usr,
}

/// The dm-verity partitions systemd pairs with the partition it mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityParts {
    /// The root or `/usr` partition the hash tree covers: the one [`select`] chose.
    pub data: Part,
    /// Its `…-verity` partition, holding the hash tree.
    pub verity: Part,
    /// Its `…-verity-sig` partition (JSON with the root hash and its PKCS#7 signature),
    /// when the table has one. systemd 252 reads it for `/usr` only when a `.usrhash`
    /// gave the hash: deciding that is the caller's business, as it knows the hash.
    pub sig: Option<Part>,
}

/// The verity partitions that pair with the root or `/usr` partition of the GPT in
/// `src`, as systemd 252's `dissect_image()` pairs them when PID 1 starts a `RootImage=`
/// service. `hash` is the root hash from a sidecar file, if any. `Ok(None)`: no GPT, or
/// no verity partition for the chosen root or `/usr`.
///
/// Pairing is by architecture: the verity partition of the data partition's architecture,
/// the newest by label when there are several. A known hash narrows every choice first:
/// only the data partition whose UUID is the hash's first 128 bits, and the verity
/// partition whose UUID is its last 128 bits, are candidates. Errors are the layouts
/// systemd refuses, so that a service with such an image could not start: a verity or
/// signature partition without its data or verity partition, verity for both root and
/// `/usr` or for root next to a separate `/usr`, a hash naming no partition. One more is
/// this reader's own: a hash that picks another partition than the one [`select`] reads
/// (an older A/B version), since the units attached would not be those the service runs.
pub fn verity_parts(
    src: &Source,
    hash: Option<(&[u8], HashFor)>,
) -> Result<Option<VerityParts>, String> {
    let Some(gpt) = read_gpt(src)? else {
        return Ok(None);
    };
    let uuids = match hash {
        None => None,
        Some((h, target)) => {
            let (Some(first), Some(last)) = (h.first_chunk::<16>(), h.last_chunk::<16>()) else {
                return Err(format!(
                    "the root hash has {} bytes, fewer than the 16 that name a partition",
                    h.len()
                ));
            };
            Some((
                target,
                u128::from_be_bytes(*first),
                u128::from_be_bytes(*last),
            ))
        }
    };
    let narrowing = |role: HashFor| match uuids {
        Some((target, data, verity)) if target == role => Some((data, verity)),
        _ => None,
    };
    // systemd skips the verity partitions of the file system a known hash is not for.
    let root_verity = uuids.is_none_or(|(t, _, _)| t == HashFor::Root);
    let usr_verity = uuids.is_none_or(|(t, _, _)| t == HashFor::Usr);

    let archs: Vec<&'static str> = [native_arch(), secondary_arch()]
        .into_iter()
        .flatten()
        .collect();
    let (root_arch, root) = pair(
        &gpt,
        Role::Root,
        &archs,
        narrowing(HashFor::Root),
        root_verity,
    )?;
    // Once root is found, /usr of another architecture is dropped, as systemd does.
    let usr_archs = match root_arch {
        Some(arch) => vec![arch],
        None => archs,
    };
    let (_, usr) = pair(
        &gpt,
        Role::Usr,
        &usr_archs,
        narrowing(HashFor::Usr),
        usr_verity,
    )?;

    for (f, what) in [(&root, "root"), (&usr, "/usr")] {
        if let (Some(sig), None) = (f.sig, f.verity) {
            return Err(format!(
                "{} has no {what} verity partition to go with it",
                describe_entry(sig)
            ));
        }
    }
    if let (Some(rv), Some(uv)) = (root.verity, usr.verity) {
        return Err(format!(
            "verity partitions for both root ({}) and /usr ({}), and systemd supports only one",
            describe_entry(rv),
            describe_entry(uv)
        ));
    }
    if let (Some(rv), Some(u)) = (root.verity, usr.data) {
        return Err(format!(
            "{} next to a separate /usr ({}), which systemd refuses",
            describe_entry(rv),
            describe_entry(u)
        ));
    }
    if let Some((target, data_uuid, verity_uuid)) = uuids {
        let (f, what) = match target {
            HashFor::Root => (&root, "root"),
            HashFor::Usr => (&usr, "/usr"),
        };
        if f.data.is_none() {
            return Err(format!(
                "the {what} hash names partition UUID {}, but no {what} partition has it",
                guid_text(data_uuid)
            ));
        }
        if f.verity.is_none() {
            return Err(format!(
                "the {what} hash names verity partition UUID {}, but no {what} verity partition has it",
                guid_text(verity_uuid)
            ));
        }
    }

    // The hash may pick an older version than the newest one that is read.
    if let Selection::Parts {
        root: read_root,
        usr: read_usr,
    } = choose_gpt(&gpt)?
    {
        for (read, used, what) in [(read_root, root.data, "root"), (read_usr, usr.data, "/usr")] {
            if let (Some(read), Some(used)) = (read, used)
                && read.number != used.number
            {
                return Err(format!(
                    "the {what} hash selects partition {} {:?}, but partition {} {:?} is the one read",
                    used.number, used.label, read.number, read.label
                ));
            }
        }
    }

    let (f, data) = match (root.verity, usr.verity) {
        (Some(_), _) => (&root, root.data),
        (None, Some(_)) => (&usr, usr.data),
        (None, None) => return Ok(None),
    };
    let (Some(data), Some(verity)) = (data, f.verity) else {
        return Ok(None);
    };
    Ok(Some(VerityParts {
        data: gpt_part(&gpt, data, entry_type_name(data))?,
        verity: gpt_part(&gpt, verity, entry_type_name(verity))?,
        sig: f
            .sig
            .map(|s| gpt_part(&gpt, s, entry_type_name(s)))
            .transpose()?,
    }))
}

/// A data partition type and the verity partitions of the same architecture.
#[derive(Default, Clone, Copy)]
struct Family<'a> {
    data: Option<&'a GptEntry>,
    verity: Option<&'a GptEntry>,
    sig: Option<&'a GptEntry>,
}

/// Root or `/usr` of the first architecture in `archs` that has one, with its verity
/// partitions. A verity or signature partition of an architecture that has no data
/// partition is an error, as in systemd, rather than a reason to look further.
fn pair<'a>(
    gpt: &'a Gpt,
    role: Role,
    archs: &[&'static str],
    narrowing: Option<(u128, u128)>,
    with_verity: bool,
) -> Result<(Option<&'static str>, Family<'a>), String> {
    for &arch in archs {
        let Some(data_type) = PART_TYPES
            .iter()
            .find(|t| t.role == role && t.arch == Some(arch))
        else {
            continue;
        };
        let verity_name = format!("{}-verity", data_type.name);
        let sig_name = format!("{}-verity-sig", data_type.name);
        let named = |e: &GptEntry, name: &str| e.part_type().is_some_and(|t| t.name == name);
        let data = newest(gpt, |e| {
            e.type_guid == data_type.guid && narrowing.is_none_or(|(d, _)| e.uuid == d)
        });
        let (verity, sig) = if with_verity {
            (
                newest(gpt, |e| {
                    named(e, &verity_name) && narrowing.is_none_or(|(_, v)| e.uuid == v)
                }),
                newest(gpt, |e| named(e, &sig_name)),
            )
        } else {
            (None, None)
        };
        if data.is_some() {
            return Ok((Some(arch), Family { data, verity, sig }));
        }
        if let Some(orphan) = verity.or(sig) {
            let what = if role == Role::Root { "root" } else { "/usr" };
            return Err(format!(
                "{} has no {what} partition to go with it",
                describe_entry(orphan)
            ));
        }
    }
    Ok((None, Family::default()))
}

/// The candidate with the newest label; on equal labels the first in the table, as
/// systemd keeps the one it saw first.
fn newest(gpt: &Gpt, wanted: impl Fn(&GptEntry) -> bool) -> Option<&GptEntry> {
    let mut best: Option<&GptEntry> = None;
    for e in gpt.entries.iter().filter(|e| !e.no_auto() && wanted(e)) {
        if best.is_none_or(|b| {
            strverscmp_improved(e.label.as_bytes(), b.label.as_bytes()) == Ordering::Greater
        }) {
            best = Some(e);
        }
    }
    best
}

fn entry_type_name(e: &GptEntry) -> &'static str {
    e.part_type().map_or("unknown", |t| t.name)
}

fn describe_entry(e: &GptEntry) -> String {
    format!("partition {} ({})", e.number, e.type_text())
}

// --- MBR ---------------------------------------------------------------------------

const MBR_SECTOR: u64 = 512;
const MBR_TABLE_OFFSET: usize = 446;
const MBR_ENTRY_SIZE: usize = 16;
const MBR_BOOTABLE: u8 = 0x80;
const MBR_TYPE_LINUX: u8 = 0x83;
const MBR_TYPE_PROTECTIVE: u8 = 0xEE;
const MBR_TYPES_EXTENDED: [u8; 3] = [0x05, 0x0F, 0x85];

struct MbrEntry {
    number: u32,
    status: u8,
    kind: u8,
    /// Byte range `[offset, end)` in the image.
    offset: u64,
    end: u64,
}

/// The partition an MBR points at, as systemd uses it: a single bootable Linux (0x83)
/// partition. `None` when the first sector does not look like an MBR.
fn read_mbr(src: &Source) -> Result<Option<Selection>, String> {
    let sector = src.read_vec(0, MBR_SECTOR as usize).map_err(read_err)?;
    if bytes::<2>(&sector, 510) != Some([0x55, 0xAA]) {
        return Ok(None);
    }
    let mut entries = Vec::new();
    for (i, number) in (1..=4u32).enumerate() {
        let off = MBR_TABLE_OFFSET + i * MBR_ENTRY_SIZE;
        let (Some([status]), Some([kind]), Some(start), Some(sectors)) = (
            bytes::<1>(&sector, off),
            bytes::<1>(&sector, off + 4),
            le32(&sector, off + 8),
            le32(&sector, off + 12),
        ) else {
            return Ok(None);
        };
        // Anything else here is boot code or a boot sector, not a partition table.
        if status != 0 && status != MBR_BOOTABLE {
            return Ok(None);
        }
        // The kernel and libblkid skip empty slots and zero-length partitions alike.
        if kind == 0 || sectors == 0 {
            continue;
        }
        let offset = u64::from(start).checked_mul(MBR_SECTOR);
        let len = u64::from(sectors).checked_mul(MBR_SECTOR);
        let Some((offset, end)) = offset
            .zip(len)
            .and_then(|(o, l)| Some((o, o.checked_add(l)?)))
        else {
            return Err(format!("MBR partition {number} is out of range"));
        };
        entries.push(MbrEntry {
            number,
            status,
            kind,
            offset,
            end,
        });
    }
    if entries.is_empty() {
        return Ok(None);
    }
    if entries.iter().any(|e| e.kind == MBR_TYPE_PROTECTIVE) {
        return Err(
            "protective MBR found, but no valid GPT header at byte 512 or 4096".to_string(),
        );
    }
    for e in &entries {
        if e.end > src.len() {
            return Err(format!(
                "MBR partition {} extends past the end of the image",
                e.number
            ));
        }
        if MBR_TYPES_EXTENDED.contains(&e.kind) {
            return Err(format!(
                "MBR partition {} is an extended partition, which is not supported",
                e.number
            ));
        }
    }
    for (i, a) in entries.iter().enumerate() {
        for b in entries.iter().skip(i.saturating_add(1)) {
            if a.offset < b.end && b.offset < a.end {
                return Err(format!(
                    "MBR partitions {} and {} overlap",
                    a.number, b.number
                ));
            }
        }
    }
    let linux: Vec<&MbrEntry> = entries
        .iter()
        .filter(|e| e.kind == MBR_TYPE_LINUX)
        .collect();
    // systemd's dissect_image() only takes Linux partitions with the bootable flag.
    let bootable: Vec<&MbrEntry> = linux
        .iter()
        .copied()
        .filter(|e| e.status == MBR_BOOTABLE)
        .collect();
    match (bootable.as_slice(), linux.first()) {
        ([only], _) => {
            let root = Part {
                number: only.number,
                offset: only.offset,
                size: only.end.saturating_sub(only.offset),
                label: String::new(),
                type_name: "linux-generic",
            };
            Ok(Some(Selection::Parts {
                root: Some(root),
                usr: None,
            }))
        }
        ([], Some(first)) => Err(format!(
            "MBR Linux partition {} is not marked bootable, which systemd requires",
            first.number
        )),
        ([], None) => Err("MBR has no Linux (type 0x83) partition".to_string()),
        (several, _) => {
            let numbers: Vec<String> = several.iter().map(|e| e.number.to_string()).collect();
            Err(format!(
                "multiple generic Linux partitions (MBR partitions {})",
                numbers.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use std::process::{Command, Stdio};

    const GENERIC: u128 = 0x0fc63daf_8483_4772_8e79_3d69d8477de4;
    const ESP: u128 = 0xc12a7328_f81f_11d2_ba4b_00a0c93ec93b;

    fn native() -> &'static str {
        native_arch().expect("tests need a DPS architecture")
    }

    /// An architecture this build never picks.
    fn foreign() -> &'static str {
        if native() == "arm64" {
            "x86-64"
        } else {
            "arm64"
        }
    }

    fn ty(role: Role, arch: &str) -> u128 {
        PART_TYPES
            .iter()
            .find(|t| t.role == role && t.arch == Some(arch))
            .map(|t| t.guid)
            .unwrap()
    }

    fn source(bytes: &[u8]) -> Source {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        Source::new(file, bytes.len() as u64)
    }

    struct TPart {
        ty: u128,
        first: u64,
        last: u64,
        attrs: u64,
        label: &'static str,
    }

    fn part(ty: u128, first: u64, last: u64, label: &'static str) -> TPart {
        TPart {
            ty,
            first,
            last,
            attrs: 0,
            label,
        }
    }

    struct Layout {
        ss: u64,
        sectors: u64,
        entry_size: u32,
        entry_count: u32,
        parts: Vec<TPart>,
    }

    impl Layout {
        /// 128 KiB for 512-byte sectors, 512 KiB for 4096-byte sectors.
        fn new(ss: u64, parts: Vec<TPart>) -> Layout {
            let sectors = if ss == 512 { 256 } else { 128 };
            Layout {
                ss,
                sectors,
                entry_size: 128,
                entry_count: 128,
                parts,
            }
        }

        fn array_sectors(&self) -> u64 {
            (u64::from(self.entry_count) * u64::from(self.entry_size)).div_ceil(self.ss)
        }

        fn first_usable(&self) -> u64 {
            2 + self.array_sectors()
        }

        fn last_usable(&self) -> u64 {
            self.sectors.saturating_sub(2 + self.array_sectors())
        }

        fn build(&self) -> Vec<u8> {
            let ss = self.ss as usize;
            let mut img = vec![0u8; ss * self.sectors as usize];
            // Protective MBR.
            img[446 + 4] = 0xEE;
            img[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
            let pmbr_len = u32::try_from(self.sectors - 1).unwrap_or(u32::MAX);
            img[446 + 12..446 + 16].copy_from_slice(&pmbr_len.to_le_bytes());
            img[510] = 0x55;
            img[511] = 0xAA;

            for (i, p) in self.parts.iter().enumerate() {
                let off = 2 * ss + i * self.entry_size as usize;
                put_guid(&mut img, off, p.ty);
                put_guid(
                    &mut img,
                    off + 16,
                    0x1234_5678_9abc_4def_8000_0000_0000_0000 + i as u128,
                );
                img[off + 32..off + 40].copy_from_slice(&p.first.to_le_bytes());
                img[off + 40..off + 48].copy_from_slice(&p.last.to_le_bytes());
                img[off + 48..off + 56].copy_from_slice(&p.attrs.to_le_bytes());
                for (k, unit) in p.label.encode_utf16().take(36).enumerate() {
                    img[off + 56 + 2 * k..off + 58 + 2 * k].copy_from_slice(&unit.to_le_bytes());
                }
            }

            let h = ss;
            img[h..h + 8].copy_from_slice(GPT_SIGNATURE);
            img[h + 8..h + 12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
            img[h + 12..h + 16].copy_from_slice(&92u32.to_le_bytes());
            img[h + 24..h + 32].copy_from_slice(&1u64.to_le_bytes());
            img[h + 32..h + 40].copy_from_slice(&(self.sectors - 1).to_le_bytes());
            img[h + 40..h + 48].copy_from_slice(&self.first_usable().to_le_bytes());
            img[h + 48..h + 56].copy_from_slice(&self.last_usable().to_le_bytes());
            put_guid(&mut img, h + 56, 0xfeed_face_0000_4000_8000_0000_0000_0001);
            img[h + 72..h + 80].copy_from_slice(&2u64.to_le_bytes());
            img[h + 80..h + 84].copy_from_slice(&self.entry_count.to_le_bytes());
            img[h + 84..h + 88].copy_from_slice(&self.entry_size.to_le_bytes());
            resign(&mut img, self.ss);
            img
        }
    }

    fn put_guid(buf: &mut [u8], off: usize, g: u128) {
        buf[off..off + 4].copy_from_slice(&((g >> 96) as u32).to_le_bytes());
        buf[off + 4..off + 6].copy_from_slice(&((g >> 80) as u16).to_le_bytes());
        buf[off + 6..off + 8].copy_from_slice(&((g >> 64) as u16).to_le_bytes());
        buf[off + 8..off + 16].copy_from_slice(&(g as u64).to_be_bytes());
    }

    fn put32(img: &mut [u8], off: usize, v: u32) {
        img[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// Recompute both CRCs from whatever the header now says, so that mutated tables get
    /// past the checksums. Must itself survive any header contents.
    fn resign(img: &mut [u8], ss: u64) {
        let h = ss as usize;
        let field32 = |img: &[u8], off| le32(img, h + off).unwrap_or(0);
        let lba = le64(img, h + 72).unwrap_or(0);
        let len = u64::from(field32(img, 80)) * u64::from(field32(img, 84));
        if len <= 8 << 20
            && let Some(start) = lba.checked_mul(ss)
            && let Some(end) = start.checked_add(len)
            && end <= img.len() as u64
        {
            let crc = crc32(&img[start as usize..end as usize]);
            put32(img, h + 88, crc);
        }
        let hsize = (field32(img, 12) as usize)
            .min(ss as usize)
            .min(img.len().saturating_sub(h));
        if hsize >= 20 {
            put32(img, h + 16, 0);
            let crc = crc32(&img[h..h + hsize]);
            put32(img, h + 16, crc);
        }
    }

    fn select_bytes(img: &[u8]) -> Result<Selection, String> {
        select(&source(img))
    }

    fn parts_of(sel: Result<Selection, String>) -> (Option<Part>, Option<Part>) {
        match sel {
            Ok(Selection::Parts { root, usr }) => (root, usr),
            other => panic!("expected partitions, got {other:?}"),
        }
    }

    fn err_of(sel: Result<Selection, String>) -> String {
        match sel {
            Err(e) => e,
            Ok(s) => panic!("expected an error, got {s:?}"),
        }
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn type_table_is_consistent() {
        for (i, a) in PART_TYPES.iter().enumerate() {
            for b in &PART_TYPES[i + 1..] {
                assert_ne!(a.guid, b.guid, "{} and {}", a.name, b.name);
                assert_ne!(a.name, b.name);
            }
        }
        assert_eq!(
            type_name("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"),
            Some("root-x86-64")
        );
        assert_eq!(
            type_name("7d0359a3-02b3-4f0a-865c-654403e70625"),
            Some("usr-arm")
        );
        assert_eq!(
            type_name("0fc63daf-8483-4772-8e79-3d69d8477de4"),
            Some("linux-generic")
        );
        assert_eq!(type_name("not a uuid"), None);
        assert_eq!(guid_text(ESP), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
    }

    #[test]
    fn gpt_512_root() {
        let root = ty(Role::Root, native());
        let img = Layout::new(
            512,
            vec![part(ESP, 34, 63, "esp"), part(root, 64, 127, "r")],
        )
        .build();
        let (root, usr) = parts_of(select_bytes(&img));
        let root = root.unwrap();
        assert_eq!(
            (root.number, root.offset, root.size),
            (2, 64 * 512, 64 * 512)
        );
        assert_eq!(root.label, "r");
        assert_eq!(root.type_name, format!("root-{}", native()));
        assert_eq!(usr, None);
    }

    #[test]
    fn gpt_4096_root() {
        let root = ty(Role::Root, native());
        let l = Layout::new(4096, vec![part(root, 8, 40, "")]);
        assert_eq!(l.first_usable(), 6);
        let (root, _) = parts_of(select_bytes(&l.build()));
        let root = root.unwrap();
        assert_eq!(
            (root.number, root.offset, root.size),
            (1, 8 * 4096, 33 * 4096)
        );
    }

    #[test]
    fn typed_root_beats_generic() {
        let root = ty(Role::Root, native());
        let img = Layout::new(
            512,
            vec![part(GENERIC, 34, 63, ""), part(root, 64, 127, "")],
        )
        .build();
        let (root, _) = parts_of(select_bytes(&img));
        assert_eq!(root.unwrap().number, 2);
    }

    #[test]
    fn foreign_root_is_refused() {
        let root = ty(Role::Root, foreign());
        let img = Layout::new(512, vec![part(ESP, 34, 63, ""), part(root, 64, 127, "")]).build();
        assert_eq!(
            err_of(select_bytes(&img)),
            format!(
                "no root or /usr partition for {} (partitions found: esp, root-{})",
                native(),
                foreign()
            )
        );
        // Not even a generic partition stands in for the root of another machine.
        let img = Layout::new(
            512,
            vec![part(GENERIC, 34, 63, ""), part(root, 64, 127, "")],
        )
        .build();
        assert!(err_of(select_bytes(&img)).starts_with("no root or /usr partition for"));
    }

    #[test]
    fn unknown_types_are_named_by_uuid() {
        let odd = 0x21686148_6449_6e6f_744e_656564454649;
        let img = Layout::new(512, vec![part(odd, 34, 63, "")]).build();
        assert!(
            err_of(select_bytes(&img))
                .ends_with("(partitions found: 21686148-6449-6e6f-744e-656564454649)")
        );
        let img = Layout::new(512, vec![]).build();
        assert!(err_of(select_bytes(&img)).ends_with("(the partition table is empty)"));
    }

    #[test]
    fn usr_only() {
        let usr = ty(Role::Usr, native());
        let img = Layout::new(512, vec![part(usr, 34, 127, "usr_7")]).build();
        let (root, usr) = parts_of(select_bytes(&img));
        assert_eq!(root, None);
        let usr = usr.unwrap();
        assert_eq!((usr.offset, usr.label.as_str()), (34 * 512, "usr_7"));
        assert_eq!(usr.type_name, format!("usr-{}", native()));
    }

    #[test]
    fn root_and_usr() {
        let img = Layout::new(
            512,
            vec![
                part(ty(Role::Usr, native()), 34, 99, ""),
                part(ty(Role::Root, native()), 100, 127, ""),
            ],
        )
        .build();
        let (root, usr) = parts_of(select_bytes(&img));
        assert_eq!(root.unwrap().number, 2);
        assert_eq!(usr.unwrap().number, 1);
    }

    #[test]
    fn secondary_architecture() {
        let (Some(native), Some(second)) = (native_arch(), secondary_arch()) else {
            return;
        };
        let root2 = ty(Role::Root, second);
        let img = Layout::new(512, vec![part(root2, 34, 127, "")]).build();
        let (root, _) = parts_of(select_bytes(&img));
        assert_eq!(root.unwrap().type_name, format!("root-{second}"));

        // Native wins even with an older label.
        let img = Layout::new(
            512,
            vec![
                part(root2, 34, 63, "v9"),
                part(ty(Role::Root, native), 64, 127, "v1"),
            ],
        )
        .build();
        let (root, _) = parts_of(select_bytes(&img));
        assert_eq!(root.unwrap().number, 2);

        // A native root with a secondary /usr is a mixed image.
        let img = Layout::new(
            512,
            vec![
                part(ty(Role::Root, native), 34, 63, ""),
                part(ty(Role::Usr, second), 64, 127, ""),
            ],
        )
        .build();
        assert_eq!(
            err_of(select_bytes(&img)),
            format!(
                "root partition 1 (root-{native}) and /usr partition 2 (usr-{second}) are for different architectures"
            )
        );
    }

    #[test]
    fn newest_label_wins() {
        let root = ty(Role::Root, native());
        for (a, b, want) in [("root_1.2", "root_1.10", 2), ("root_1.10", "root_1.2", 1)] {
            let img = Layout::new(512, vec![part(root, 34, 63, a), part(root, 64, 127, b)]).build();
            let (r, _) = parts_of(select_bytes(&img));
            let r = r.unwrap();
            assert_eq!(r.number, want);
            assert_eq!(r.label, "root_1.10");
        }
        // Three-way, with the newest in the middle and a tie below it.
        let img = Layout::new(
            512,
            vec![
                part(root, 34, 63, "1"),
                part(root, 64, 95, "3"),
                part(root, 96, 127, "1"),
            ],
        )
        .build();
        assert_eq!(parts_of(select_bytes(&img)).0.unwrap().number, 2);
    }

    #[test]
    fn equal_labels_are_refused() {
        let root = ty(Role::Root, native());
        let img = Layout::new(
            512,
            vec![
                part(root, 34, 63, "root_1.2"),
                part(root, 64, 127, "root_1.2"),
            ],
        )
        .build();
        let e = err_of(select_bytes(&img));
        assert!(e.starts_with("multiple suitable root partitions"), "{e}");
        // Also when they only compare equal.
        let usr = ty(Role::Usr, native());
        let img = Layout::new(
            512,
            vec![part(usr, 34, 63, "1.02"), part(usr, 64, 127, "1.2")],
        )
        .build();
        assert!(err_of(select_bytes(&img)).starts_with("multiple suitable /usr partitions"));
    }

    #[test]
    fn no_auto_is_ignored() {
        let root = ty(Role::Root, native());
        let mut newer = part(root, 64, 127, "root_2");
        newer.attrs = GPT_FLAG_NO_AUTO;
        let img = Layout::new(512, vec![part(root, 34, 63, "root_1"), newer]).build();
        assert_eq!(parts_of(select_bytes(&img)).0.unwrap().label, "root_1");

        // A no-auto root leaves the generic fallback in place.
        let mut hidden = part(root, 64, 127, "");
        hidden.attrs = GPT_FLAG_NO_AUTO | 1 << 60;
        let img = Layout::new(512, vec![part(GENERIC, 34, 63, ""), hidden]).build();
        let root = parts_of(select_bytes(&img)).0.unwrap();
        assert_eq!((root.number, root.type_name), (1, "linux-generic"));

        // Only hidden partitions: the message says so.
        let mut hidden = part(ty(Role::Root, native()), 34, 63, "");
        hidden.attrs = GPT_FLAG_NO_AUTO;
        let img = Layout::new(512, vec![hidden]).build();
        assert!(err_of(select_bytes(&img)).ends_with(&format!("root-{} (no-auto))", native())));
    }

    #[test]
    fn generic_partitions() {
        let img = Layout::new(
            512,
            vec![part(ESP, 34, 63, ""), part(GENERIC, 64, 127, "data")],
        )
        .build();
        let (root, usr) = parts_of(select_bytes(&img));
        let root = root.unwrap();
        assert_eq!(
            (root.number, root.type_name, root.offset),
            (2, "linux-generic", 64 * 512)
        );
        assert_eq!(usr, None);

        let img = Layout::new(
            512,
            vec![part(GENERIC, 34, 63, ""), part(GENERIC, 64, 127, "")],
        )
        .build();
        let e = err_of(select_bytes(&img));
        assert!(
            e.starts_with("multiple generic Linux partitions (1, 2)"),
            "{e}"
        );
    }

    #[test]
    fn bad_header_crc() {
        let mut img = Layout::new(512, vec![part(GENERIC, 34, 127, "")]).build();
        img[512 + 16] ^= 1;
        assert_eq!(
            err_of(select_bytes(&img)),
            "GPT header at byte 512 has a bad CRC32"
        );
        // A changed field with the old CRC is just as bad.
        let mut img = Layout::new(4096, vec![part(GENERIC, 8, 20, "")]).build();
        img[4096 + 40] ^= 1;
        assert_eq!(
            err_of(select_bytes(&img)),
            "GPT header at byte 4096 has a bad CRC32"
        );
    }

    #[test]
    fn bad_entries_crc() {
        let mut img = Layout::new(512, vec![part(GENERIC, 34, 127, "")]).build();
        img[1024 + 60] ^= 0x40;
        assert_eq!(
            err_of(select_bytes(&img)),
            "GPT partition entry array has a bad CRC32"
        );
    }

    #[test]
    fn entry_size_256() {
        let mut l = Layout::new(
            512,
            vec![
                part(ESP, 34, 63, ""),
                part(ty(Role::Root, native()), 64, 127, "x"),
            ],
        );
        l.entry_size = 256;
        l.entry_count = 64;
        let (root, _) = parts_of(select_bytes(&l.build()));
        let root = root.unwrap();
        assert_eq!(
            (root.number, root.offset, root.label.as_str()),
            (2, 64 * 512, "x")
        );
    }

    #[test]
    fn entry_size_100_is_refused() {
        let mut l = Layout::new(512, vec![part(GENERIC, 34, 127, "")]);
        l.entry_size = 100;
        let e = err_of(select_bytes(&l.build()));
        assert!(e.starts_with("GPT partition entry size 100 "), "{e}");
        for bad in [0, 64, 192, 8192] {
            l.entry_size = bad;
            assert!(err_of(select_bytes(&l.build())).starts_with("GPT partition entry size"));
        }
    }

    #[test]
    fn huge_entry_count_is_refused() {
        let l = Layout::new(512, vec![part(GENERIC, 34, 127, "")]);
        let mut img = l.build();
        put32(&mut img, 512 + 80, u32::MAX);
        resign(&mut img, 512);
        assert_eq!(
            err_of(select_bytes(&img)),
            "GPT claims 4294967295 partition entries, more than the 16384 accepted"
        );
        // Within the count limit but over the size limit.
        put32(&mut img, 512 + 80, 16_384);
        put32(&mut img, 512 + 84, 4096);
        resign(&mut img, 512);
        assert!(err_of(select_bytes(&img)).contains("is larger than 4194304"));
    }

    #[test]
    fn partition_past_the_end() {
        let img = Layout::new(512, vec![part(ESP, 34, 63, ""), part(GENERIC, 64, 256, "")]).build();
        assert_eq!(
            err_of(select_bytes(&img)),
            "partition 2 extends past the end of the image"
        );
        let img = Layout::new(512, vec![part(GENERIC, 34, u64::MAX, "")]).build();
        assert_eq!(
            err_of(select_bytes(&img)),
            "partition 1 extends past the end of the image"
        );
        // Inside the image but over the backup table.
        let img = Layout::new(512, vec![part(GENERIC, 34, 250, "")]).build();
        assert!(err_of(select_bytes(&img)).contains("lies outside the usable area"));
        let img = Layout::new(512, vec![part(GENERIC, 64, 40, "")]).build();
        assert_eq!(
            err_of(select_bytes(&img)),
            "partition 1 ends (LBA 40) before it starts (LBA 64)"
        );
    }

    #[test]
    fn overlapping_partitions() {
        let root = ty(Role::Root, native());
        let img = Layout::new(
            512,
            vec![
                part(GENERIC, 100, 127, ""),
                part(ESP, 34, 50, ""),
                part(root, 50, 99, ""),
            ],
        )
        .build();
        assert_eq!(err_of(select_bytes(&img)), "partitions 2 and 3 overlap");
        // A partition nested inside a long one.
        let img = Layout::new(
            512,
            vec![part(GENERIC, 34, 127, ""), part(root, 60, 61, "")],
        )
        .build();
        assert_eq!(err_of(select_bytes(&img)), "partitions 1 and 2 overlap");
    }

    #[test]
    fn truncated_image() {
        let img = Layout::new(512, vec![part(GENERIC, 34, 127, "")]).build();
        let e = err_of(select_bytes(&img[..1536]));
        assert_eq!(
            e,
            "GPT partition entry array (16384 bytes at byte 1024) extends past the end of the image (1536 bytes)"
        );
        // Header itself cut off.
        let e = err_of(select_bytes(&img[..560]));
        assert!(e.contains("cut off by the end of the image"), "{e}");
        // Only the signature's first bytes: not a GPT at all.
        let e = err_of(select_bytes(&img[..515]));
        assert!(e.starts_with("protective MBR found"), "{e}");
    }

    #[test]
    fn labels_decode_lossily() {
        let mut l = Layout::new(512, vec![part(GENERIC, 34, 127, "root_é😀")]);
        let img = l.build();
        assert_eq!(parts_of(select_bytes(&img)).0.unwrap().label, "root_é😀");
        // An unpaired surrogate, then text after a NUL that must be dropped.
        l.parts[0].label = "";
        let mut img = l.build();
        for (k, unit) in [0x61u16, 0xD800, 0x62, 0, 0x63].iter().enumerate() {
            img[1024 + 56 + 2 * k..1024 + 58 + 2 * k].copy_from_slice(&unit.to_le_bytes());
        }
        resign(&mut img, 512);
        assert_eq!(parts_of(select_bytes(&img)).0.unwrap().label, "a\u{FFFD}b");
        // All 36 units used, no NUL.
        l.parts[0].label = "abcdefghijklmnopqrstuvwxyz0123456789";
        assert_eq!(
            parts_of(select_bytes(&l.build())).0.unwrap().label.len(),
            36
        );
    }

    #[test]
    fn whole_file_system_and_nothing() {
        let mut img = vec![0u8; 8192];
        img[..4].copy_from_slice(b"hsqs");
        assert_eq!(select_bytes(&img), Ok(Selection::Whole));
        assert_eq!(
            select_bytes(&[0u8; 8192]),
            Err("no partition table or known file system found".to_string())
        );
        assert_eq!(
            select_bytes(&[]),
            Err("no partition table or known file system found".to_string())
        );
        assert_eq!(
            select_bytes(&[0u8; 100]),
            Err("no partition table or known file system found".to_string())
        );
    }

    /// Status byte, type, first sector, sector count.
    type MbrRow = (u8, u8, u32, u32);

    fn mbr(entries: &[MbrRow], len: usize) -> Vec<u8> {
        let mut img = vec![0u8; len];
        for (i, &(status, kind, start, sectors)) in entries.iter().enumerate() {
            let off = 446 + 16 * i;
            img[off] = status;
            img[off + 4] = kind;
            img[off + 8..off + 12].copy_from_slice(&start.to_le_bytes());
            img[off + 12..off + 16].copy_from_slice(&sectors.to_le_bytes());
        }
        img[510] = 0x55;
        img[511] = 0xAA;
        img
    }

    #[test]
    fn mbr_linux_partition() {
        let img = mbr(&[(0x00, 0x0c, 1, 63), (0x80, 0x83, 64, 64)], 128 * 512);
        let (root, usr) = parts_of(select_bytes(&img));
        assert_eq!(
            root,
            Some(Part {
                number: 2,
                offset: 64 * 512,
                size: 64 * 512,
                label: String::new(),
                type_name: "linux-generic"
            })
        );
        assert_eq!(usr, None);
    }

    #[test]
    fn mbr_errors() {
        let len = 128 * 512;
        let cases: &[(&[MbrRow], &str)] = &[
            (
                &[(0x00, 0x83, 64, 64)],
                "MBR Linux partition 1 is not marked bootable, which systemd requires",
            ),
            (
                &[(0x80, 0x83, 1, 63), (0x80, 0x83, 64, 64)],
                "multiple generic Linux partitions (MBR partitions 1, 2)",
            ),
            (
                &[(0x80, 0x83, 64, 65)],
                "MBR partition 1 extends past the end of the image",
            ),
            (
                &[(0x80, 0x83, u32::MAX, u32::MAX)],
                "MBR partition 1 extends past the end of the image",
            ),
            (
                &[(0x00, 0xEE, 1, 127)],
                "protective MBR found, but no valid GPT header at byte 512 or 4096",
            ),
            (
                &[(0x80, 0x83, 1, 63), (0x00, 0x05, 64, 64)],
                "MBR partition 2 is an extended partition, which is not supported",
            ),
            (
                &[(0x80, 0x83, 1, 63), (0x00, 0x82, 60, 64)],
                "MBR partitions 1 and 2 overlap",
            ),
            (
                &[(0x00, 0x0c, 1, 127)],
                "MBR has no Linux (type 0x83) partition",
            ),
        ];
        for &(entries, want) in cases {
            assert_eq!(err_of(select_bytes(&mbr(entries, len))), want);
        }
        // A bad status byte means this is not an MBR.
        let img = mbr(&[(0x80, 0x83, 1, 63), (0x01, 0, 0, 0)], len);
        assert_eq!(
            err_of(select_bytes(&img)),
            "no partition table or known file system found"
        );
    }

    #[test]
    fn fat_boot_sector_is_not_an_mbr() {
        let mut img = mbr(&[(0x80, 0x83, 1, 63)], 128 * 512);
        img[82..90].copy_from_slice(b"FAT32   ");
        assert_eq!(select_bytes(&img), Ok(Selection::Whole));
    }

    /// xorshift64*: enough randomness for mutation testing without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn random_mutations_never_panic() {
        let root = ty(Role::Root, native());
        let usr = ty(Role::Usr, native());
        let base512 = Layout::new(
            512,
            vec![
                part(root, 34, 63, "root_1.2"),
                part(root, 64, 79, "root_1.10"),
                part(usr, 80, 127, "u"),
            ],
        )
        .build();
        let base4k = Layout::new(
            4096,
            vec![part(root, 6, 20, "a"), part(GENERIC, 21, 40, "")],
        )
        .build();
        let interesting: [u64; 10] = [
            0,
            1,
            2,
            33,
            34,
            127,
            128,
            4096,
            u64::from(u32::MAX),
            u64::MAX,
        ];

        let file = tempfile::tempfile().unwrap();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut outcomes = [0usize; 2];
        for round in 0..4000 {
            let (mut img, ss) = if round % 4 == 3 {
                (base4k.clone(), 4096usize)
            } else {
                (base512.clone(), 512usize)
            };
            for _ in 0..1 + rng.below(4) {
                let region = match rng.below(4) {
                    0 => ss..ss + 92,
                    1 | 2 => 2 * ss..2 * ss + 4 * 128,
                    _ => 0..512,
                };
                let at = region.start + rng.below((region.end - region.start) as u64) as usize;
                match rng.below(3) {
                    0 => img[at] = rng.next() as u8,
                    1 => img[at] ^= 1 << rng.below(8),
                    _ => {
                        let v = interesting[rng.below(interesting.len() as u64) as usize];
                        let width = [2usize, 4, 8][rng.below(3) as usize];
                        let end = (at + width).min(img.len());
                        img[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
                    }
                }
            }
            if rng.below(8) != 0 {
                resign(&mut img, ss as u64);
            }
            let len = if rng.below(10) == 0 {
                rng.below(img.len() as u64)
            } else {
                img.len() as u64
            };
            file.set_len(0).unwrap();
            file.write_all_at(&img[..len as usize], 0).unwrap();
            let src = Source::new(file.try_clone().unwrap(), len);
            match select(&src) {
                Ok(Selection::Parts { root, usr }) => {
                    outcomes[0] += 1;
                    for p in root.iter().chain(usr.iter()) {
                        assert!(p.offset.checked_add(p.size).is_some_and(|end| end <= len));
                    }
                }
                Ok(Selection::Whole) => outcomes[0] += 1,
                Err(e) => {
                    assert!(!e.contains('\n'), "{e}");
                    outcomes[1] += 1;
                }
            }
        }
        // Both paths must really have been exercised.
        assert!(outcomes[0] > 100 && outcomes[1] > 100, "{outcomes:?}");
    }

    /// Runs a partitioning tool with `script` on stdin; `None` when it is not installed.
    fn run_tool(tool: &str, args: &[&str], script: &str) -> Option<()> {
        let mut child = match Command::new(tool)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                eprintln!("skipping: cannot run {tool}: {e}");
                return None;
            }
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(())
    }

    fn image_file(len: u64) -> (tempfile::TempPath, String) {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(len).unwrap();
        let path = file.into_temp_path();
        let name = path.to_str().unwrap().to_string();
        (path, name)
    }

    fn select_path(path: &str) -> Result<Selection, String> {
        let file = std::fs::File::open(path).unwrap();
        let len = file.metadata().unwrap().len();
        select(&Source::new(file, len))
    }

    #[test]
    fn sfdisk_gpt_512() {
        let (_keep, path) = image_file(4 << 20);
        let script = "label: gpt\nstart=2048, size=4096, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=\"root_1\"\n";
        if run_tool("sfdisk", &["-q", &path], script).is_none() {
            return;
        }
        let (root, usr) = parts_of(select_path(&path));
        let root = root.unwrap();
        assert_eq!(usr, None);
        assert_eq!(
            (root.number, root.offset, root.size),
            (1, 1_048_576, 4096 * 512)
        );
        assert_eq!(
            (root.label.as_str(), root.type_name),
            ("root_1", "root-x86-64")
        );
    }

    /// util-linux 2.38's sfdisk can not write 4096-byte-sector tables to a file (its
    /// `sector-size:` header is recalculated to the file's 512), but `fdisk -b 4096` can.
    #[test]
    fn fdisk_gpt_4096() {
        let (_keep, path) = image_file(16 << 20);
        let script = "g\nn\n1\n256\n+4M\nt\n4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709\nw\n";
        if run_tool("fdisk", &["-b", "4096", &path], script).is_none() {
            return;
        }
        let (root, _) = parts_of(select_path(&path));
        let root = root.unwrap();
        assert_eq!(
            (root.number, root.offset, root.size),
            (1, 1_048_576, 4 << 20)
        );
        assert_eq!(root.type_name, "root-x86-64");
    }

    #[test]
    fn sfdisk_mbr() {
        let (_keep, path) = image_file(4 << 20);
        if run_tool(
            "sfdisk",
            &["-q", &path],
            "label: dos\nstart=2048, size=4096, type=83, bootable\n",
        )
        .is_none()
        {
            return;
        }
        let (root, _) = parts_of(select_path(&path));
        let root = root.unwrap();
        assert_eq!(
            (root.number, root.offset, root.size),
            (1, 1_048_576, 4096 * 512)
        );
    }

    /// The tests of [`verity_parts`], on tables built in memory.
    mod verity {
        use super::*;

        /// The unique GUID [`Layout::build`] gives the partition at `index`.
        fn uuid(index: u128) -> u128 {
            0x1234_5678_9abc_4def_8000_0000_0000_0000 + index
        }

        /// A root hash whose halves name the partitions at `data` and `verity`.
        fn hash(data: u128, verity: u128) -> Vec<u8> {
            let mut h = uuid(data).to_be_bytes().to_vec();
            h.extend_from_slice(&uuid(verity).to_be_bytes());
            h
        }

        fn named(name: &str) -> u128 {
            PART_TYPES.iter().find(|t| t.name == name).unwrap().guid
        }

        fn verity(role: Role, arch: &str) -> u128 {
            let data = PART_TYPES
                .iter()
                .find(|t| t.guid == ty(role, arch))
                .unwrap();
            named(&format!("{}-verity", data.name))
        }

        fn sig(role: Role, arch: &str) -> u128 {
            let data = PART_TYPES
                .iter()
                .find(|t| t.guid == ty(role, arch))
                .unwrap();
            named(&format!("{}-verity-sig", data.name))
        }

        /// Partitions of 16 sectors each, in order, from LBA 34.
        fn table(parts: &[(u128, &'static str)]) -> Vec<u8> {
            let parts = parts
                .iter()
                .enumerate()
                .map(|(i, &(t, label))| {
                    let first = 34 + 16 * i as u64;
                    part(t, first, first + 15, label)
                })
                .collect();
            Layout::new(512, parts).build()
        }

        fn numbers(
            r: Result<Option<VerityParts>, String>,
        ) -> Result<Option<(u32, u32, Option<u32>)>, String> {
            r.map(|v| v.map(|v| (v.data.number, v.verity.number, v.sig.map(|s| s.number))))
        }

        fn run(
            img: &[u8],
            hash: Option<(&[u8], HashFor)>,
        ) -> Result<Option<(u32, u32, Option<u32>)>, String> {
            numbers(verity_parts(&source(img), hash))
        }

        #[test]
        fn pairs_by_architecture() {
            let n = native();
            let img = table(&[(ty(Role::Root, n), ""), (verity(Role::Root, n), "")]);
            assert_eq!(run(&img, None), Ok(Some((1, 2, None))));
            let got = verity_parts(&source(&img), None).unwrap().unwrap();
            assert_eq!(got.data.type_name, format!("root-{n}"));
            assert_eq!(got.verity.type_name, format!("root-{n}-verity"));

            let img = table(&[
                (sig(Role::Root, n), ""),
                (verity(Role::Root, n), ""),
                (ty(Role::Root, n), ""),
            ]);
            assert_eq!(run(&img, None), Ok(Some((3, 2, Some(1)))));

            // A foreign architecture's verity partition pairs with nothing.
            let img = table(&[(ty(Role::Root, n), ""), (verity(Role::Root, foreign()), "")]);
            assert_eq!(run(&img, None), Ok(None));
            let img = table(&[(ty(Role::Root, n), "")]);
            assert_eq!(run(&img, None), Ok(None));

            // "Do not mount automatically" applies to verity partitions too.
            let mut parts = vec![
                part(ty(Role::Root, n), 34, 49, ""),
                part(verity(Role::Root, n), 50, 65, ""),
            ];
            parts[1].attrs = GPT_FLAG_NO_AUTO;
            let img = Layout::new(512, parts).build();
            assert_eq!(run(&img, None), Ok(None));

            // No GPT at all.
            assert_eq!(run(&vec![0u8; 64 * 1024], None), Ok(None));
        }

        #[test]
        fn secondary_architecture_pairs_with_its_own() {
            let (Some(n), Some(s)) = (native_arch(), secondary_arch()) else {
                return;
            };
            let img = table(&[(ty(Role::Root, s), ""), (verity(Role::Root, s), "")]);
            assert_eq!(run(&img, None), Ok(Some((1, 2, None))));
            // Native root: the secondary verity partition is dropped with the rest.
            let img = table(&[(ty(Role::Root, n), ""), (verity(Role::Root, s), "")]);
            assert_eq!(run(&img, None), Ok(None));
            // Native verity without a native root is refused, even with a secondary root.
            let img = table(&[(ty(Role::Root, s), ""), (verity(Role::Root, n), "")]);
            let err = run(&img, None).unwrap_err();
            assert!(err.contains("has no root partition"), "{err}");
        }

        #[test]
        fn newest_label_and_first_on_ties() {
            let n = native();
            let img = table(&[
                (ty(Role::Root, n), "1"),
                (ty(Role::Root, n), "2"),
                (verity(Role::Root, n), "1"),
                (verity(Role::Root, n), "2"),
                (verity(Role::Root, n), "2"),
            ]);
            assert_eq!(run(&img, None), Ok(Some((2, 4, None))));
            // A hash names the pair by UUID, whatever the labels...
            assert_eq!(
                run(&img, Some((&hash(1, 4), HashFor::Root))),
                Ok(Some((2, 5, None)))
            );
            // ...and picking an older root than the one read is an error.
            let err = run(&img, Some((&hash(0, 2), HashFor::Root))).unwrap_err();
            assert!(err.contains("selects partition 1 \"1\""), "{err}");
        }

        #[test]
        fn root_hash_names_partitions() {
            let n = native();
            let img = table(&[(ty(Role::Root, n), ""), (verity(Role::Root, n), "")]);
            let root = |h: &[u8]| run(&img, Some((h, HashFor::Root)));
            assert_eq!(root(&hash(0, 1)), Ok(Some((1, 2, None))));
            assert!(
                root(&hash(1, 0))
                    .unwrap_err()
                    .contains("no root partition has it")
            );
            // The verity partition named, but not the root: systemd finds verity without root.
            assert!(
                root(&hash(1, 1))
                    .unwrap_err()
                    .contains("has no root partition to go with it")
            );
            assert!(
                root(&hash(0, 0))
                    .unwrap_err()
                    .contains("no root verity partition")
            );
            assert!(root(&[1; 15]).unwrap_err().contains("15 bytes"));
            // Any length from 16 bytes on: the halves may overlap.
            assert_eq!(
                root(&uuid(0).to_be_bytes()),
                Err(format!(
                    "the root hash names verity partition UUID {}, but no root verity partition has it",
                    guid_text(uuid(0))
                ))
            );
            // A /usr hash ignores root's verity partition and needs a /usr partition.
            let err = run(&img, Some((&hash(0, 1), HashFor::Usr))).unwrap_err();
            assert!(err.contains("no /usr partition has it"), "{err}");
        }

        #[test]
        fn usr_verity() {
            let n = native();
            let img = table(&[
                (ty(Role::Usr, n), ""),
                (verity(Role::Usr, n), ""),
                (sig(Role::Usr, n), ""),
            ]);
            assert_eq!(run(&img, None), Ok(Some((1, 2, Some(3)))));
            assert_eq!(
                run(&img, Some((&hash(0, 1), HashFor::Usr))),
                Ok(Some((1, 2, Some(3))))
            );
            // A verity-less root beside a verity /usr is fine.
            let img = table(&[
                (ty(Role::Root, n), ""),
                (ty(Role::Usr, n), ""),
                (verity(Role::Usr, n), ""),
            ]);
            assert_eq!(run(&img, None), Ok(Some((2, 3, None))));
            assert_eq!(
                run(&img, Some((&hash(1, 2), HashFor::Usr))),
                Ok(Some((2, 3, None)))
            );
        }

        /// Types and UUIDs in the entries are what changes the pairing; scrambling them
        /// (CRCs fixed up) reaches every branch without a panic or a multi-line error.
        #[test]
        fn scrambled_entries_never_panic() {
            let n = native();
            let kinds = [
                ty(Role::Root, n),
                ty(Role::Usr, n),
                verity(Role::Root, n),
                verity(Role::Usr, n),
                sig(Role::Root, n),
                sig(Role::Usr, n),
                GENERIC,
                0,
            ];
            let mut rng = Rng(0x5eed_1234_abcd_0001);
            let mut outcomes = [0usize; 3];
            for _ in 0..2000 {
                let mut img = table(&[(GENERIC, ""); 6]);
                for i in 0..6 {
                    let off = 1024 + 128 * i;
                    let kind = kinds[rng.below(kinds.len() as u64) as usize];
                    put_guid(&mut img, off, kind);
                    put_guid(&mut img, off + 16, uuid(rng.below(3) as u128));
                    if rng.below(4) == 0 {
                        img[off + 56] = b'0' + rng.below(3) as u8;
                    }
                }
                resign(&mut img, 512);
                let h = hash(rng.below(3) as u128, rng.below(3) as u128);
                let hash = match rng.below(3) {
                    0 => None,
                    1 => Some((h.as_slice(), HashFor::Root)),
                    _ => Some((h.as_slice(), HashFor::Usr)),
                };
                match verity_parts(&source(&img), hash) {
                    Ok(None) => outcomes[0] += 1,
                    Ok(Some(_)) => outcomes[1] += 1,
                    Err(e) => {
                        assert!(!e.contains('\n'), "{e}");
                        outcomes[2] += 1;
                    }
                }
            }
            // Every outcome must really have been reached.
            assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
        }

        #[test]
        fn layouts_systemd_refuses() {
            let n = native();
            let refused = |parts: &[(u128, &'static str)], why: &str| {
                let err = run(&table(parts), None).unwrap_err();
                assert!(err.contains(why), "{err}");
                assert!(!err.contains('\n'));
            };
            refused(
                &[(ty(Role::Root, n), ""), (sig(Role::Root, n), "")],
                "partition 2 (root-",
            );
            refused(
                &[(ty(Role::Usr, n), ""), (verity(Role::Root, n), "")],
                "has no root partition",
            );
            refused(&[(verity(Role::Usr, n), "")], "has no /usr partition");
            refused(
                &[
                    (ty(Role::Root, n), ""),
                    (verity(Role::Root, n), ""),
                    (ty(Role::Usr, n), ""),
                ],
                "next to a separate /usr",
            );
            refused(
                &[
                    (ty(Role::Root, n), ""),
                    (verity(Role::Root, n), ""),
                    (ty(Role::Usr, n), ""),
                    (verity(Role::Usr, n), ""),
                ],
                "both root",
            );
        }
    }
}
