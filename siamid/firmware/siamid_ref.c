/*
 * siamid_ref.c: the firmware side of siamid, a portable C99 reference (see siamid_ref.h).
 *
 * Every preprocessing function mirrors the same-named function of siamid/fixedpoint.py, line
 * for line: integers only, intermediates within int64 for crop <= SIAMID_MAX_CROP and block <=
 * SIAMID_MAX_BLOCK, explicit rounding (floor divisions and shifts written out, so negative
 * values round the same on every compiler). The signature functions mirror
 * siamid/firmware/signatures.py: double arithmetic in index order, no fused multiply-add
 * (gcc's default for -std=c99; with a GNU dialect add -ffp-contract=off).
 */
#include "siamid_ref.h"

#include <math.h>

#define FRAC_ONE ((int64_t)1 << SIAMID_FRAC_BITS)
/* siamid.nets normalises signatures with F.normalize(..., eps=1e-6). */
#define NORM_EPS 1e-6
/* A template's mean shorter than this has no direction (siamid.fusion). */
#define MEAN_EPS 1e-6

/* ---------------------------------------------------------------- integer helpers */

/* floor(a / b) for b > 0 (C division truncates towards zero). */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if (a % b != 0 && a < 0) {
        q -= 1;
    }
    return q;
}

/* floor(a / 2^s) (a right shift of a negative value is implementation-defined in C). */
static int64_t floor_shr(int64_t a, int32_t s)
{
    if (a >= 0) {
        return a >> s;
    }
    return -(int64_t)((((uint64_t)(-a)) + (((uint64_t)1 << s) - 1u)) >> s);
}

/* a / 2^s rounded half up: fixedpoint._shift_round. */
static int64_t shift_round(int64_t a, int32_t s)
{
    return floor_shr(a + (((int64_t)1 << s) >> 1), s);
}

/* floor(sqrt(x)), exact: math.isqrt. */
static uint64_t isqrt64(uint64_t x)
{
    uint64_t r = 0, bit = (uint64_t)1 << 62;
    while (bit > x) {
        bit >>= 2;
    }
    while (bit != 0) {
        if (x >= r + bit) {
            x -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
        bit >>= 2;
    }
    return r;
}

static int32_t clamp_index(int32_t i, int32_t n)
{
    return i < 0 ? 0 : (i >= n ? n - 1 : i);
}

static int32_t min32(int32_t a, int32_t b) { return a < b ? a : b; }
static int32_t max32(int32_t a, int32_t b) { return a > b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static int overlaps(const void *a, size_t a_len, const void *b, size_t b_len)
{
    uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
    return a0 < b0 + b_len && b0 < a0 + a_len;
}

/* n times the standard deviation of n values, floored: isqrt(n * squares - sums^2). */
static int64_t std_n(int64_t sum, int64_t squares, int64_t n)
{
    return (int64_t)isqrt64((uint64_t)(n * squares - sum * sum));
}

static void block_sums(const uint8_t *img, int32_t stride, int32_t y0, int32_t x0, int32_t b,
                       int64_t *sum, int64_t *squares)
{
    int64_t s = 0, q = 0;
    int32_t y, x;
    for (y = y0; y < y0 + b; ++y) {
        const uint8_t *row = img + (size_t)y * (size_t)stride;
        for (x = x0; x < x0 + b; ++x) {
            s += row[x];
            q += (int64_t)row[x] * row[x];
        }
    }
    *sum = s;
    *squares = q;
}

/* sum of kernel[dy][dx] * img[clamp(y + dy - r)][clamp(x + dx - r)]; transposed: kernel[dx][dy]. */
static int64_t correlate_at(const uint8_t *img, int32_t side, int32_t y, int32_t x,
                            const int32_t *kernel, int32_t taps, int transposed)
{
    int32_t r = taps / 2, dy, dx;
    int64_t acc = 0;
    for (dy = 0; dy < taps; ++dy) {
        const uint8_t *row = img + (size_t)clamp_index(y + dy - r, side) * (size_t)side;
        for (dx = 0; dx < taps; ++dx) {
            int32_t k = transposed ? kernel[dx * SIAMID_MAX_TAPS + dy]
                                   : kernel[dy * SIAMID_MAX_TAPS + dx];
            if (k != 0) {
                acc += (int64_t)k * row[clamp_index(x + dx - r, side)];
            }
        }
    }
    return acc;
}

/* ---------------------------------------------------------------- stages */

void siamid_histogram(const uint8_t *pixels, int32_t height, int32_t width, int32_t stride,
                      uint32_t hist[256])
{
    int32_t y, x;
    for (x = 0; x < 256; ++x) {
        hist[x] = 0;
    }
    for (y = 0; y < height; ++y) {
        const uint8_t *row = pixels + (size_t)y * (size_t)stride;
        for (x = 0; x < width; ++x) {
            hist[row[x]] += 1u;
        }
    }
}

int32_t siamid_quantile_level(const uint32_t hist[256], int32_t q16)
{
    int64_t n = 0, rank, cum = 0;
    int32_t v;
    for (v = 0; v < 256; ++v) {
        n += hist[v];
    }
    rank = floor_shr((int64_t)q16 * (n - 1) + FRAC_ONE / 2, SIAMID_FRAC_BITS);
    for (v = 0; v < 256; ++v) {
        cum += hist[v];
        if (cum > rank) {
            return v;
        }
    }
    return 256;
}

void siamid_window_origin(const siamid_prep_params *p, const uint8_t *gray, int32_t height,
                          int32_t width, int32_t *top, int32_t *left, int32_t *fill)
{
    uint32_t hist[256];
    int32_t side = p->crop;
    siamid_histogram(gray, height, width, width, hist);
    *fill = siamid_quantile_level(hist, p->pad_quantile_q16);
    if (p->center_on_foreground) {
        int64_t spread = siamid_quantile_level(hist, (int32_t)(FRAC_ONE - p->foreground_quantile_q16))
                         - siamid_quantile_level(hist, p->foreground_quantile_q16);
        int32_t b = p->block, nby = height / p->block, nbx = width / p->block, by, bx;
        int64_t n = (int64_t)b * b, k = 0, sum_y = 0, sum_x = 0, total = (int64_t)nby * nbx;
        for (by = 0; by < nby; ++by) {
            for (bx = 0; bx < nbx; ++bx) {
                int64_t s, q;
                block_sums(gray, width, by * b, bx * b, b, &s, &q);
                if (std_n(s, q, n) * FRAC_ONE > (int64_t)p->foreground_contrast_q16 * spread * n) {
                    k += 1;
                    sum_y += 2 * (int64_t)b * by + b - 1;
                    sum_x += 2 * (int64_t)b * bx + b - 1;
                }
            }
        }
        if (total > 0 && k * FRAC_ONE > (int64_t)p->min_foreground_q16 * total) {
            *top = (int32_t)floor_div(sum_y - (int64_t)side * k + k, 2 * k);
            *left = (int32_t)floor_div(sum_x - (int64_t)side * k + k, 2 * k);
            return;
        }
    }
    *top = (int32_t)floor_div((int64_t)height - side + 1, 2);
    *left = (int32_t)floor_div((int64_t)width - side + 1, 2);
}

void siamid_crop_window(const uint8_t *gray, int32_t height, int32_t width, int32_t top,
                        int32_t left, int32_t side, uint8_t fill, uint8_t *out)
{
    int32_t y, x;
    for (y = 0; y < side; ++y) {
        int32_t sy = top + y;
        for (x = 0; x < side; ++x) {
            int32_t sx = left + x;
            int inside = sy >= 0 && sy < height && sx >= 0 && sx < width;
            out[(size_t)y * (size_t)side + (size_t)x] =
                inside ? gray[(size_t)sy * (size_t)width + (size_t)sx] : fill;
        }
    }
}

void siamid_balance_table(const siamid_prep_params *p, const uint8_t *window, int32_t side,
                          uint8_t table[256], int32_t *low, int32_t *high)
{
    uint32_t hist[256];
    int32_t b = min32(p->balance_border, side / 4), v;
    int64_t span;
    b = max32(b, 0);
    siamid_histogram(window + (size_t)b * (size_t)side + (size_t)b, side - 2 * b, side - 2 * b,
                     side, hist);
    *low = siamid_quantile_level(hist, p->balance_low_q16);
    *high = siamid_quantile_level(hist, p->balance_high_q16);
    span = max64((int64_t)*high - *low, 1);
    for (v = 0; v < 256; ++v) {
        int64_t t = floor_div(((int64_t)v - *low) * 510 + span, 2 * span);
        table[v] = (uint8_t)(t < 0 ? 0 : (t > 255 ? 255 : t));
    }
}

/* (sum of block anisotropies, sum of block energies): fixedpoint._coherence_sums. */
static void coherence_sums(const siamid_prep_params *p, const uint8_t *balanced, int32_t side,
                           int64_t *anisotropy, int64_t *energy)
{
    int32_t b = p->block, nb = side / p->block, by, bx, y, x;
    int32_t shift = 2 * p->smooth_order;
    int64_t a_sum = 0, e_sum = 0;
    for (by = 0; by < nb; ++by) {
        for (bx = 0; bx < nb; ++bx) {
            int64_t jxx = 0, jyy = 0, jxy = 0, d;
            for (y = by * b; y < (by + 1) * b; ++y) {
                for (x = bx * b; x < (bx + 1) * b; ++x) {
                    int64_t gx = shift_round(correlate_at(balanced, side, y, x, p->gradient_kernel,
                                                          p->kernel_taps, 0), shift);
                    int64_t gy = shift_round(correlate_at(balanced, side, y, x, p->gradient_kernel,
                                                          p->kernel_taps, 1), shift);
                    jxx += gx * gx;
                    jyy += gy * gy;
                    jxy += gx * gy;
                }
            }
            d = jxx - jyy;
            a_sum += (int64_t)isqrt64((uint64_t)(d * d) + 4u * (uint64_t)(jxy * jxy));
            e_sum += jxx + jyy;
        }
    }
    *anisotropy = a_sum;
    *energy = e_sum;
}

void siamid_judge(const siamid_prep_params *p, const uint8_t *window, const uint8_t *balanced,
                  int32_t side, siamid_quality *q)
{
    uint32_t hist[256];
    int64_t n = (int64_t)side * side, gray_sum = 0, laplace_sum = 0, bb = (int64_t)p->block * p->block;
    int64_t scale = (int64_t)1 << (2 * p->smooth_order);
    int32_t v, y, x, nb = side / p->block, by, bx, qb = nb / 4;
    int32_t ridge = 0, center = 0, flat;
    int fails[6], k;

    siamid_histogram(window, side, side, side, hist);
    for (v = 0; v < 256; ++v) {
        gray_sum += (int64_t)v * hist[v];
    }
    q->gray_sum = gray_sum;
    q->pixels = (int32_t)n;
    q->contrast = siamid_quantile_level(hist, (int32_t)(FRAC_ONE - p->contrast_quantile_q16))
                  - siamid_quantile_level(hist, p->contrast_quantile_q16);
    flat = (int64_t)q->contrast * FRAC_ONE <= (int64_t)p->min_contrast_q16 * 255;

    for (y = 0; y < side; ++y) {
        for (x = 0; x < side; ++x) {
            int64_t l = correlate_at(balanced, side, y, x, p->laplace_kernel, p->kernel_taps, 0);
            laplace_sum += l < 0 ? -l : l;
        }
    }
    q->laplace_sum = laplace_sum;

    for (by = 0; by < nb; ++by) {
        for (bx = 0; bx < nb; ++bx) {
            int64_t s, sq;
            block_sums(balanced, side, by * p->block, bx * p->block, p->block, &s, &sq);
            if (std_n(s, sq, bb) * FRAC_ONE > (int64_t)p->ridge_std_q16 * 255 * bb) {
                ridge += 1;
                if (by >= qb && by < nb - qb && bx >= qb && bx < nb - qb) {
                    center += 1;
                }
            }
        }
    }
    q->blocks = nb * nb;
    q->center_blocks = (nb - 2 * qb) * (nb - 2 * qb);
    q->ridge_blocks = flat ? 0 : ridge;
    q->center_ridge_blocks = flat ? 0 : center;
    coherence_sums(p, balanced, side, &q->anisotropy_sum, &q->energy_sum);

    fails[0] = gray_sum * FRAC_ONE < (int64_t)p->min_mean_q16 * 255 * n;
    fails[1] = gray_sum * FRAC_ONE > (int64_t)p->max_mean_q16 * 255 * n;
    fails[2] = flat || laplace_sum * FRAC_ONE < (int64_t)p->min_sharpness_q16 * 255 * n * scale;
    fails[3] = (int64_t)q->ridge_blocks * FRAC_ONE
               < (int64_t)p->min_ridge_area_q16 * max64(q->blocks, 1);
    fails[4] = (int64_t)q->center_ridge_blocks * FRAC_ONE
               < (int64_t)p->min_center_ridge_area_q16 * max64(q->center_blocks, 1);
    fails[5] = q->anisotropy_sum * FRAC_ONE
               < (int64_t)p->min_coherence_q16 * max64(q->energy_sum, 1);
    q->verdict = SIAMID_OK;
    for (k = 0; k < 6; ++k) {
        if (fails[k]) {
            q->verdict = k + 1;
            break;
        }
    }
}

int siamid_sharpen(const uint8_t *in, uint8_t *out, int32_t height, int32_t width,
                   const int32_t kernel[9], int32_t shift)
{
    int32_t y, x, dy, dx;
    size_t bytes = (size_t)height * (size_t)width;
    if (in == NULL || out == NULL || kernel == NULL || height < 1 || width < 1 || shift < 0
        || shift > 30 || overlaps(in, bytes, out, bytes)) {
        return SIAMID_E_ARGUMENT;
    }
    for (y = 0; y < height; ++y) {
        for (x = 0; x < width; ++x) {
            int64_t acc = 0, v;
            for (dy = 0; dy < 3; ++dy) {
                const uint8_t *row = in + (size_t)clamp_index(y + dy - 1, height) * (size_t)width;
                for (dx = 0; dx < 3; ++dx) {
                    acc += (int64_t)kernel[dy * 3 + dx] * row[clamp_index(x + dx - 1, width)];
                }
            }
            v = shift_round(acc, shift);
            out[(size_t)y * (size_t)width + (size_t)x] = (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
        }
    }
    return SIAMID_SUCCESS;
}

void siamid_area_resize(const uint8_t *in, int32_t side, uint8_t *out, int32_t size)
{
    int64_t d = (int64_t)side * side;
    int32_t oy, ox, iy, ix;
    for (oy = 0; oy < size; ++oy) {
        int64_t y0 = (int64_t)oy * side, y1 = (int64_t)(oy + 1) * side;
        for (ox = 0; ox < size; ++ox) {
            int64_t x0 = (int64_t)ox * side, x1 = (int64_t)(ox + 1) * side, acc = 0;
            for (iy = (int32_t)(y0 / size); iy <= (int32_t)((y1 - 1) / size); ++iy) {
                int64_t top = (int64_t)iy * size, wy;
                wy = (y1 < top + size ? y1 : top + size) - (y0 > top ? y0 : top);
                for (ix = (int32_t)(x0 / size); ix <= (int32_t)((x1 - 1) / size); ++ix) {
                    int64_t lft = (int64_t)ix * size, wx;
                    wx = (x1 < lft + size ? x1 : lft + size) - (x0 > lft ? x0 : lft);
                    acc += wy * wx * in[(size_t)iy * (size_t)side + (size_t)ix];
                }
            }
            out[(size_t)oy * (size_t)size + (size_t)ox] = (uint8_t)((2 * acc + d) / (2 * d));
        }
    }
}

size_t siamid_work_size(const siamid_prep_params *p)
{
    return 2u * (size_t)p->crop * (size_t)p->crop;
}

int siamid_preprocess(const siamid_prep_params *p, const uint8_t *image, int32_t height,
                      int32_t width, uint8_t *work, uint8_t *network_input,
                      siamid_quality *quality)
{
    uint8_t table[256];
    uint8_t *window, *balanced;
    size_t side_bytes, i;
    int32_t side;
    if (p == NULL || image == NULL || work == NULL || network_input == NULL || quality == NULL
        || height < 1 || width < 1 || p->crop < 1 || p->crop > SIAMID_MAX_CROP || p->size < 1
        || p->size > p->crop || p->block < 2 || p->block > SIAMID_MAX_BLOCK
        || p->kernel_taps < 3 || p->kernel_taps > SIAMID_MAX_TAPS || p->kernel_taps % 2 == 0
        || p->smooth_order != p->kernel_taps - 3) {
        return SIAMID_E_ARGUMENT;
    }
    side = p->crop;
    side_bytes = (size_t)side * (size_t)side;
    if (overlaps(work, 2 * side_bytes, image, (size_t)height * (size_t)width)
        || overlaps(work, 2 * side_bytes, network_input, (size_t)p->size * (size_t)p->size)) {
        return SIAMID_E_ARGUMENT;
    }
    window = work;
    balanced = work + side_bytes;
    siamid_window_origin(p, image, height, width, &quality->top, &quality->left, &quality->fill);
    siamid_crop_window(image, height, width, quality->top, quality->left, side,
                       (uint8_t)quality->fill, window);
    siamid_balance_table(p, window, side, table, &quality->low, &quality->high);
    for (i = 0; i < side_bytes; ++i) {
        balanced[i] = table[window[i]];
    }
    siamid_judge(p, window, balanced, side, quality);
    /* The window is no longer needed once judged: with balance on, it takes the sharpened
     * image; with balance off the window is sharpened into the other buffer. */
    if (p->balance) {
        siamid_sharpen(balanced, window, side, side, p->sharpen_kernel, p->sharpen_shift);
        siamid_area_resize(window, side, network_input, p->size);
    } else {
        siamid_sharpen(window, balanced, side, side, p->sharpen_kernel, p->sharpen_shift);
        siamid_area_resize(balanced, side, network_input, p->size);
    }
    return SIAMID_SUCCESS;
}

/* ---------------------------------------------------------------- signatures and decisions */

void siamid_input_int8(const uint8_t *network_input, int32_t count, int32_t zero_point,
                       int8_t *out)
{
    int32_t i;
    for (i = 0; i < count; ++i) {
        out[i] = (int8_t)((int32_t)network_input[i] + zero_point);
    }
}

int siamid_signature_int8(const int8_t *q, int32_t dim, double scale, int32_t zero_point,
                          float *signature)
{
    double squares = 0.0, norm;
    int32_t i;
    if (q == NULL || signature == NULL || dim < 1) {
        return SIAMID_E_ARGUMENT;
    }
    for (i = 0; i < dim; ++i) {
        double v = scale * (double)((int32_t)q[i] - zero_point);
        squares += v * v;
    }
    norm = sqrt(squares);
    if (norm < NORM_EPS) {
        norm = NORM_EPS;
    }
    for (i = 0; i < dim; ++i) {
        double v = scale * (double)((int32_t)q[i] - zero_point);
        signature[i] = (float)(v / norm);
    }
    return SIAMID_SUCCESS;
}

int siamid_signature_float(const float *v, int32_t dim, float *signature)
{
    double squares = 0.0, norm;
    int32_t i;
    if (v == NULL || signature == NULL || dim < 1) {
        return SIAMID_E_ARGUMENT;
    }
    for (i = 0; i < dim; ++i) {
        squares += (double)v[i] * (double)v[i];
    }
    norm = sqrt(squares);
    if (norm < NORM_EPS) {
        norm = NORM_EPS;
    }
    for (i = 0; i < dim; ++i) {
        signature[i] = (float)((double)v[i] / norm);
    }
    return SIAMID_SUCCESS;
}

double siamid_distance(const float *a, const float *b, int32_t dim)
{
    double acc = 0.0;
    int32_t i;
    for (i = 0; i < dim; ++i) {
        double d = (double)a[i] - (double)b[i];
        acc += d * d;
    }
    return sqrt(acc);
}

/* Component i of the template's mean signature (summed in row order, then divided). */
static double mean_component(const float *enrolled, int32_t count, int32_t dim, int32_t i)
{
    double m = 0.0;
    int32_t j;
    for (j = 0; j < count; ++j) {
        m += (double)enrolled[(size_t)j * (size_t)dim + (size_t)i];
    }
    return m / (double)count;
}

int siamid_template_distance(const float *probe, const float *enrolled, int32_t count,
                             int32_t dim, int32_t rule, double *distance)
{
    int32_t i, j;
    if (probe == NULL || enrolled == NULL || distance == NULL || count < 1 || dim < 1) {
        return SIAMID_E_ARGUMENT;
    }
    if (rule == SIAMID_RULE_MIN) {
        double best = 0.0;
        for (j = 0; j < count; ++j) {
            double d = siamid_distance(probe, enrolled + (size_t)j * (size_t)dim, dim);
            if (j == 0 || d < best) {
                best = d;
            }
        }
        *distance = best;
        return SIAMID_SUCCESS;
    }
    if (rule == SIAMID_RULE_MEAN) {
        double squares = 0.0, norm, acc = 0.0;
        for (i = 0; i < dim; ++i) {
            double m = mean_component(enrolled, count, dim, i);
            squares += m * m;
        }
        norm = sqrt(squares);
        if (norm < MEAN_EPS) {
            return SIAMID_E_TEMPLATE;
        }
        for (i = 0; i < dim; ++i) {
            double d = (double)probe[i] - mean_component(enrolled, count, dim, i) / norm;
            acc += d * d;
        }
        *distance = sqrt(acc);
        return SIAMID_SUCCESS;
    }
    return SIAMID_E_ARGUMENT;
}

double siamid_threshold_for(const double *thresholds, int32_t n_thresholds, int32_t count)
{
    int32_t k = count < n_thresholds ? count : n_thresholds;
    return thresholds[k < 1 ? 0 : k - 1];
}

int siamid_decide(const float *probe, const float *enrolled, int32_t count, int32_t dim,
                  int32_t rule, const double *thresholds, int32_t n_thresholds,
                  double *distance)
{
    double d = 0.0;
    int status;
    if (thresholds == NULL || n_thresholds < 1) {
        return SIAMID_E_ARGUMENT;
    }
    status = siamid_template_distance(probe, enrolled, count, dim, rule, &d);
    if (status != SIAMID_SUCCESS) {
        return status;
    }
    if (distance != NULL) {
        *distance = d;
    }
    return d < siamid_threshold_for(thresholds, n_thresholds, count) ? 1 : 0;
}
