/*
 * siamid_check.c: checks the C reference against test vectors written by Python
 * (siamid.firmware.vectors.write_test_vectors). Usage: siamid_check VECTORS_FILE
 *
 * Each record holds the inputs and what Python computed; this program runs the reference on the
 * inputs and compares every byte, score and bit. It prints one line per mismatch and a summary,
 * and exits 0 only when everything matched. Buffers are static (sizes below), no malloc.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "siamid_ref.h"

#ifndef SIAMID_CHECK_MAX_PIXELS
#define SIAMID_CHECK_MAX_PIXELS (1024 * 1024)
#endif
#ifndef SIAMID_CHECK_MAX_VALUES
#define SIAMID_CHECK_MAX_VALUES 4096
#endif

static uint8_t image[SIAMID_CHECK_MAX_PIXELS];
static uint8_t expected[SIAMID_CHECK_MAX_PIXELS];
static uint8_t produced[SIAMID_CHECK_MAX_PIXELS];
static uint8_t work[2 * SIAMID_MAX_CROP * SIAMID_MAX_CROP];
static float probe[SIAMID_CHECK_MAX_VALUES];
static float enrolled[SIAMID_CHECK_MAX_VALUES];
static float signature[SIAMID_CHECK_MAX_VALUES];
static int8_t quantised[SIAMID_CHECK_MAX_VALUES];
static double thresholds[64];

static siamid_prep_params params;
static long failures = 0, records = 0, failed_records = 0;

static int read_long(FILE *in, long *v) { return fscanf(in, "%ld", v) == 1; }

static int read_word(FILE *in, char *word, size_t size)
{
    char fmt[16];
    sprintf(fmt, "%%%ds", (int)size - 1);
    return fscanf(in, fmt, word) == 1;
}

static int expect_word(FILE *in, const char *want)
{
    char word[64];
    return read_word(in, word, sizeof word) && strcmp(word, want) == 0;
}

static int read_bytes(FILE *in, uint8_t *out, long n)
{
    long i, v;
    if (n < 0 || n > SIAMID_CHECK_MAX_PIXELS) {
        return 0;
    }
    for (i = 0; i < n; ++i) {
        if (!read_long(in, &v) || v < 0 || v > 255) {
            return 0;
        }
        out[i] = (uint8_t)v;
    }
    return 1;
}

/* A float given as the hex of its IEEE bits, a double likewise. */
static int read_float(FILE *in, float *out)
{
    unsigned long bits;
    uint32_t b;
    if (fscanf(in, "%lx", &bits) != 1) {
        return 0;
    }
    b = (uint32_t)bits;
    memcpy(out, &b, sizeof b);
    return 1;
}

static int read_double(FILE *in, double *out)
{
    unsigned long long bits;
    uint64_t b;
    if (fscanf(in, "%llx", &bits) != 1) {
        return 0;
    }
    b = (uint64_t)bits;
    memcpy(out, &b, sizeof b);
    return 1;
}

static int read_floats(FILE *in, float *out, long n)
{
    long i;
    if (n < 0 || n > SIAMID_CHECK_MAX_VALUES) {
        return 0;
    }
    for (i = 0; i < n; ++i) {
        if (!read_float(in, &out[i])) {
            return 0;
        }
    }
    return 1;
}

static void fail(const char *kind, const char *id, const char *what, long long want,
                 long long got)
{
    failures += 1;
    printf("FAIL %s %s: %s expected %lld got %lld\n", kind, id, what, want, got);
}

struct field { const char *name; int32_t *values; long count; };

static int read_param(FILE *in)
{
    struct field fields[] = {
#define F(name) { #name, &params.name, 1 }
#define A(name) { #name, params.name, (long)(sizeof params.name / sizeof params.name[0]) }
        F(crop), F(size), F(center_on_foreground), F(block), F(foreground_contrast_q16),
        F(foreground_quantile_q16), F(min_foreground_q16), F(pad_quantile_q16), F(balance),
        F(balance_border), F(balance_low_q16), F(balance_high_q16), A(sharpen_kernel),
        F(sharpen_shift), F(smooth_order), F(kernel_taps), A(laplace_kernel),
        A(gradient_kernel), F(contrast_quantile_q16), F(min_mean_q16), F(max_mean_q16),
        F(min_contrast_q16), F(min_sharpness_q16), F(ridge_std_q16), F(min_ridge_area_q16),
        F(min_center_ridge_area_q16), F(min_coherence_q16)
#undef F
#undef A
    };
    char name[64];
    long count, i, v;
    size_t k;
    if (!read_word(in, name, sizeof name) || !read_long(in, &count)) {
        return 0;
    }
    for (k = 0; k < sizeof fields / sizeof fields[0]; ++k) {
        if (strcmp(fields[k].name, name) == 0) {
            if (count != fields[k].count) {
                printf("ERROR param %s has %ld values, the struct %ld\n", name, count,
                       fields[k].count);
                return 0;
            }
            for (i = 0; i < count; ++i) {
                if (!read_long(in, &v)) {
                    return 0;
                }
                fields[k].values[i] = (int32_t)v;
            }
            return 1;
        }
    }
    printf("ERROR unknown param %s: siamid_ref.h and siamid.fixedpoint disagree\n", name);
    return 0;
}

static int check_prep(FILE *in)
{
    char id[128];
    long h, w, want[16], i, n;
    siamid_quality q;
    memset(&q, 0, sizeof q);
    if (!read_word(in, id, sizeof id) || !read_long(in, &h) || !read_long(in, &w)
        || h * w > SIAMID_CHECK_MAX_PIXELS || !read_bytes(in, image, h * w)
        || !expect_word(in, "expect")) {
        return 0;
    }
    for (i = 0; i < 16; ++i) {
        if (!read_long(in, &want[i])) {
            return 0;
        }
    }
    n = (long)params.size * params.size;
    if (!read_bytes(in, expected, n)) {
        return 0;
    }
    if (siamid_preprocess(&params, image, (int32_t)h, (int32_t)w, work, produced, &q)
        != SIAMID_SUCCESS) {
        fail("prep", id, "status", 0, -1);
        return 1;
    }
    {
        long long got[16];
        static const char *names[16] = {
            "verdict", "top", "left", "fill", "low", "high", "gray_sum", "pixels", "contrast",
            "laplace_sum", "ridge_blocks", "blocks", "center_ridge_blocks", "center_blocks",
            "anisotropy_sum", "energy_sum"};
        got[0] = q.verdict; got[1] = q.top; got[2] = q.left; got[3] = q.fill; got[4] = q.low;
        got[5] = q.high; got[6] = q.gray_sum; got[7] = q.pixels; got[8] = q.contrast;
        got[9] = q.laplace_sum; got[10] = q.ridge_blocks; got[11] = q.blocks;
        got[12] = q.center_ridge_blocks; got[13] = q.center_blocks; got[14] = q.anisotropy_sum;
        got[15] = q.energy_sum;
        for (i = 0; i < 16; ++i) {
            if (got[i] != want[i]) {
                fail("prep", id, names[i], want[i], got[i]);
            }
        }
    }
    for (i = 0; i < n; ++i) {
        if (produced[i] != expected[i]) {
            char what[64];
            sprintf(what, "network input byte %ld", i);
            fail("prep", id, what, expected[i], produced[i]);
            break;
        }
    }
    return 1;
}

static int check_sharpen(FILE *in)
{
    char id[128];
    long h, w, shift, i, v;
    int32_t kernel[9];
    if (!read_word(in, id, sizeof id) || !read_long(in, &h) || !read_long(in, &w)
        || !read_long(in, &shift) || h * w > SIAMID_CHECK_MAX_PIXELS) {
        return 0;
    }
    for (i = 0; i < 9; ++i) {
        if (!read_long(in, &v)) {
            return 0;
        }
        kernel[i] = (int32_t)v;
    }
    if (!read_bytes(in, image, h * w) || !expect_word(in, "expect")
        || !read_bytes(in, expected, h * w)) {
        return 0;
    }
    if (siamid_sharpen(image, image, (int32_t)h, (int32_t)w, kernel, (int32_t)shift)
        != SIAMID_E_ARGUMENT) {
        fail("sharpen", id, "in-place call refused", SIAMID_E_ARGUMENT, 0);
    }
    if (siamid_sharpen(image, produced, (int32_t)h, (int32_t)w, kernel, (int32_t)shift)
        != SIAMID_SUCCESS) {
        fail("sharpen", id, "status", 0, -1);
        return 1;
    }
    for (i = 0; i < h * w; ++i) {
        if (produced[i] != expected[i]) {
            char what[64];
            sprintf(what, "byte %ld", i);
            fail("sharpen", id, what, expected[i], produced[i]);
            break;
        }
    }
    return 1;
}

static int check_signature(FILE *in)
{
    char id[128];
    long dim, zero_point, i, v;
    double scale;
    if (!read_word(in, id, sizeof id) || !read_long(in, &dim) || dim < 1
        || dim > SIAMID_CHECK_MAX_VALUES || !read_double(in, &scale)
        || !read_long(in, &zero_point)) {
        return 0;
    }
    for (i = 0; i < dim; ++i) {
        if (!read_long(in, &v) || v < -128 || v > 127) {
            return 0;
        }
        quantised[i] = (int8_t)v;
    }
    if (!expect_word(in, "expect") || !read_floats(in, probe, dim)) {
        return 0;
    }
    siamid_signature_int8(quantised, (int32_t)dim, scale, (int32_t)zero_point, signature);
    for (i = 0; i < dim; ++i) {
        if (memcmp(&signature[i], &probe[i], sizeof(float)) != 0) {
            char what[64];
            sprintf(what, "component %ld (bits)", i);
            fail("signature", id, what, 0, 1);
            break;
        }
    }
    return 1;
}

static int check_decide(FILE *in)
{
    char id[128];
    long dim, count, rule, n, want, i;
    double want_distance, distance = -1.0;
    int got;
    if (!read_word(in, id, sizeof id) || !read_long(in, &dim) || !read_long(in, &count)
        || !read_long(in, &rule) || !read_long(in, &n) || n < 1 || n > 64
        || dim * count > SIAMID_CHECK_MAX_VALUES) {
        return 0;
    }
    for (i = 0; i < n; ++i) {
        if (!read_double(in, &thresholds[i])) {
            return 0;
        }
    }
    if (!read_floats(in, probe, dim) || !read_floats(in, enrolled, dim * count)
        || !expect_word(in, "expect") || !read_long(in, &want)
        || !read_double(in, &want_distance)) {
        return 0;
    }
    got = siamid_decide(probe, enrolled, (int32_t)count, (int32_t)dim, (int32_t)rule,
                        thresholds, (int32_t)n, &distance);
    if (got != want) {
        fail("decide", id, "result", want, got);
    }
    if (got >= 0 && memcmp(&distance, &want_distance, sizeof distance) != 0) {
        fail("decide", id, "distance bits", 0, 1);
    }
    return 1;
}

int main(int argc, char **argv)
{
    FILE *in;
    char word[64];
    long version;
    if (argc != 2) {
        fprintf(stderr, "usage: %s VECTORS_FILE\n", argv[0]);
        return 2;
    }
    in = fopen(argv[1], "r");
    if (in == NULL) {
        fprintf(stderr, "cannot open %s\n", argv[1]);
        return 2;
    }
    if (!expect_word(in, "siamid-vectors") || !read_long(in, &version) || version != 1) {
        fprintf(stderr, "%s: not a siamid test vector file of version 1\n", argv[1]);
        return 2;
    }
    while (read_word(in, word, sizeof word)) {
        int ok;
        if (strcmp(word, "end") == 0) {
            printf("passed %ld of %ld records, %ld mismatches\n", records - failed_records, records,
                   failures);
            fclose(in);
            return failures == 0 ? 0 : 1;
        }
        if (strcmp(word, "param") == 0) {
            ok = read_param(in);
        } else {
            long before = failures;
            records += 1;
            if (strcmp(word, "prep") == 0) {
                ok = check_prep(in);
            } else if (strcmp(word, "sharpen") == 0) {
                ok = check_sharpen(in);
            } else if (strcmp(word, "signature") == 0) {
                ok = check_signature(in);
            } else if (strcmp(word, "decide") == 0) {
                ok = check_decide(in);
            } else {
                ok = 0;
            }
            failed_records += failures > before;
        }
        if (!ok) {
            fprintf(stderr, "%s: malformed record '%s'\n", argv[1], word);
            fclose(in);
            return 2;
        }
    }
    fprintf(stderr, "%s: truncated (no 'end')\n", argv[1]);
    fclose(in);
    return 2;
}
