//! The GPT partition types systemd knows (src/systemd/sd-gpt.h), by the names the
//! Discoverable Partitions Specification gives them, and what each is for.

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Root,
    Usr,
    LinuxGeneric,
    /// Known by name only, so that messages can say what an image holds.
    Other,
}

#[derive(Debug)]
pub(super) struct PartType {
    /// The type UUID as written in text form, read as one big-endian number.
    pub(super) guid: u128,
    pub(super) name: &'static str,
    pub(super) role: Role,
    pub(super) arch: Option<&'static str>,
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
pub(super) static PART_TYPES: &[PartType] = &[
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

pub(super) fn part_type(guid: u128) -> Option<&'static PartType> {
    PART_TYPES.iter().find(|t| t.guid == guid)
}

/// A GPT type GUID in its usual text form.
pub(super) fn guid_text(guid: u128) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        guid >> 96,
        (guid >> 80) & 0xffff,
        (guid >> 64) & 0xffff,
        (guid >> 48) & 0xffff,
        guid & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ESP: u128 = 0xc12a7328_f81f_11d2_ba4b_00a0c93ec93b;

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
}
