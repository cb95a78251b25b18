/* A QEMU TCG plugin for tests/arm-cost.sh: counts the guest instructions a program executes
 * under qemu-aarch64 (user mode), and how many of them are Advanced SIMD (NEON) ones, so
 * that NEON and scalar code paths show up as a stable count instead of a noisy time.
 * Prints "insn_count: instructions N simd M" to stderr (qemu_plugin_outs) at exit.
 *
 * Debian bookworm's qemu-user (7.2, built with plugin support) ships no plugins and no
 * qemu-plugin.h, so the few entry points used here are declared below as QEMU 7.2's plugin
 * API (plugin version 1) defines them. Counters are plain inline adds: exact for a
 * single-threaded guest, which is what tests/arm-cost.sh runs.
 *
 * NEON is told from the disassembly: an operand with a vector arrangement (v0.4s, .16b,
 * v1.s[2]) or a 128-bit q register. Scalar floating point (s0, d0) is not counted as NEON.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

typedef void (*tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*udata_cb)(qemu_plugin_id_t id, void *userdata);

extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
extern char *qemu_plugin_insn_disas(const struct qemu_plugin_insn *insn);
extern void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                                     void *ptr, uint64_t imm);
extern void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, enum qemu_plugin_op op,
                                                       void *ptr, uint64_t imm);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb cb, void *userdata);
extern void qemu_plugin_outs(const char *string);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t instructions;
static uint64_t simd;

/* Whether an AArch64 disassembly line names a vector register operand. */
static bool is_simd(const char *d) {
    static const char *arrangements[] = {".16b", ".8b", ".8h", ".4h", ".4s", ".2s", ".2d", ".1d",
                                         ".b[", ".h[", ".s[", ".d["};
    for (size_t i = 0; i < sizeof arrangements / sizeof *arrangements; i++)
        if (strstr(d, arrangements[i]))
            return true;
    /* "ldr q0, [x1]", "st1 {q0}": a q register after a separator. */
    for (const char *p = d; (p = strchr(p, 'q')); p++)
        if (p > d && strchr(" {,", p[-1]) && p[1] >= '0' && p[1] <= '9')
            return true;
    return false;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &instructions, n);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        char *d = qemu_plugin_insn_disas(insn);
        if (d && is_simd(d))
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &simd, 1);
        free(d);
    }
}

static void on_exit_cb(qemu_plugin_id_t id, void *userdata) {
    (void)id;
    (void)userdata;
    char line[128];
    snprintf(line, sizeof line, "insn_count: instructions %llu simd %llu\n",
             (unsigned long long)instructions, (unsigned long long)simd);
    qemu_plugin_outs(line);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const struct qemu_info_t *info,
                                                               int argc, char **argv) {
    (void)info;
    (void)argc;
    (void)argv;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit_cb, NULL);
    return 0;
}
