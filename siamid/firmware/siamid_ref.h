/*
 * siamid_ref.h: the firmware side of siamid, a portable C99 reference.
 *
 * Integer preprocessing (the exact mirror of siamid/fixedpoint.py: the same bytes and the same
 * quality verdict as Python, no floating point), dequantising and L2-normalising the model's
 * output, the distance between signatures, and the decision against an enrolled template
 * (siamid's runtime convention: Euclidean distance between unit signatures, accept iff
 * distance < threshold). No malloc: the caller provides every buffer. No global state.
 *
 * The parameters (siamid_prep_params, thresholds, output quantisation) come from the model's
 * generated header (`siamid export --format c`, siamid.cexport), made from its ModelCard.
 * See docs/firmware.md.
 */
#ifndef SIAMID_REF_H
#define SIAMID_REF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The values of siamid/fixedpoint.py's FRAC_BITS, MAX_TAPS, MAX_CROP, MAX_BLOCK (a test checks). */
#define SIAMID_FRAC_BITS 16
#define SIAMID_MAX_TAPS 7
#define SIAMID_MAX_CROP 512
#define SIAMID_MAX_BLOCK 32

/* Verdicts: 0 passes; k > 0: the k-th check of preprocess.QUALITY_CHECKS failed first. */
enum siamid_verdict {
    SIAMID_OK = 0,
    SIAMID_TOO_DARK = 1,
    SIAMID_TOO_LIGHT = 2,
    SIAMID_BLURRED_OR_FLAT = 3,
    SIAMID_LITTLE_RIDGE_AREA = 4,
    SIAMID_LITTLE_CENTER_RIDGE_AREA = 5,
    SIAMID_NO_RIDGE_PATTERN = 6
};

/* Return codes (>= 0 success). */
enum siamid_status {
    SIAMID_SUCCESS = 0,
    SIAMID_E_ARGUMENT = -1,    /* a null pointer, a size out of range, or aliased buffers */
    SIAMID_E_TEMPLATE = -2     /* the template's signatures cancel out (mean rule) */
};

/* Comparison rules of siamid.fusion: min distance to any signature, or distance to the
 * re-normalised mean of the signatures. */
enum siamid_rule { SIAMID_RULE_MIN = 0, SIAMID_RULE_MEAN = 1 };

/* siamid.fixedpoint.IntegerParams, field for field (*_q16: fractions times 65536). */
typedef struct {
    int32_t crop;
    int32_t size;
    int32_t center_on_foreground;
    int32_t block;
    int32_t foreground_contrast_q16;
    int32_t foreground_quantile_q16;
    int32_t min_foreground_q16;
    int32_t pad_quantile_q16;
    int32_t balance;
    int32_t balance_border;
    int32_t balance_low_q16;
    int32_t balance_high_q16;
    int32_t sharpen_kernel[9];
    int32_t sharpen_shift;
    int32_t smooth_order;
    int32_t kernel_taps;
    int32_t laplace_kernel[SIAMID_MAX_TAPS * SIAMID_MAX_TAPS];
    int32_t gradient_kernel[SIAMID_MAX_TAPS * SIAMID_MAX_TAPS];
    int32_t contrast_quantile_q16;
    int32_t min_mean_q16;
    int32_t max_mean_q16;
    int32_t min_contrast_q16;
    int32_t min_sharpness_q16;
    int32_t ridge_std_q16;
    int32_t min_ridge_area_q16;
    int32_t min_center_ridge_area_q16;
    int32_t min_coherence_q16;
} siamid_prep_params;

/* siamid.fixedpoint.IntegerScores, field for field. */
typedef struct {
    int32_t verdict;
    int32_t top, left, fill;          /* window origin in the image, padding level */
    int32_t low, high;                /* balance levels */
    int64_t gray_sum;                 /* sum of the window's gray levels */
    int32_t pixels;                   /* crop * crop */
    int32_t contrast;                 /* levels between the contrast quantiles */
    int64_t laplace_sum;              /* sum |smoothed Laplacian|, in 1/2^(2 order) levels */
    int32_t ridge_blocks, blocks;
    int32_t center_ridge_blocks, center_blocks;
    int64_t anisotropy_sum, energy_sum;
} siamid_quality;

/* Bytes of the work buffer siamid_preprocess needs: 2 * crop * crop. */
size_t siamid_work_size(const siamid_prep_params *p);

/*
 * One gray image (height x width, row major, 8-bit, at the model's target dpi) -> the network
 * input (size x size bytes, row major) and the quality verdict (quality->verdict; the network
 * input is written whatever the verdict). `work` holds siamid_work_size(p) bytes and must not
 * overlap the image or the output. Returns SIAMID_SUCCESS or SIAMID_E_ARGUMENT.
 */
int siamid_preprocess(const siamid_prep_params *p, const uint8_t *image, int32_t height,
                      int32_t width, uint8_t *work, uint8_t *network_input,
                      siamid_quality *quality);

/* The stages, in pipeline order (each the same-named function of siamid/fixedpoint.py). */
void siamid_histogram(const uint8_t *pixels, int32_t height, int32_t width, int32_t stride,
                      uint32_t hist[256]);
int32_t siamid_quantile_level(const uint32_t hist[256], int32_t q16);
void siamid_window_origin(const siamid_prep_params *p, const uint8_t *gray, int32_t height,
                          int32_t width, int32_t *top, int32_t *left, int32_t *fill);
void siamid_crop_window(const uint8_t *gray, int32_t height, int32_t width, int32_t top,
                        int32_t left, int32_t side, uint8_t fill, uint8_t *out);
void siamid_balance_table(const siamid_prep_params *p, const uint8_t *window, int32_t side,
                          uint8_t table[256], int32_t *low, int32_t *high);
void siamid_judge(const siamid_prep_params *p, const uint8_t *window, const uint8_t *balanced,
                  int32_t side, siamid_quality *quality);
/* Sharpen into a separate buffer: SIAMID_E_ARGUMENT if `in` and `out` overlap. */
int siamid_sharpen(const uint8_t *in, uint8_t *out, int32_t height, int32_t width,
                   const int32_t kernel[9], int32_t shift);
void siamid_area_resize(const uint8_t *in, int32_t side, uint8_t *out, int32_t size);

/* The network input (count bytes) as an int8 model input quantised with scale 1/255 and
 * `zero_point` (siamid's .tflite files: -128): out = pixel + zero_point, the same real values
 * pixel / 255. `out` may be the same memory as `network_input`. */
void siamid_input_int8(const uint8_t *network_input, int32_t count, int32_t zero_point,
                       int8_t *out);

/* The model's int8 output (dim values) -> a unit signature: v = scale * (q - zero_point),
 * signature = v / max(|v|, 1e-6) (siamid.nets' F.normalize), computed in double, stored as
 * float. Returns SIAMID_SUCCESS or SIAMID_E_ARGUMENT. */
int siamid_signature_int8(const int8_t *q, int32_t dim, double scale, int32_t zero_point,
                          float *signature);
/* The same from a float output. */
int siamid_signature_float(const float *v, int32_t dim, float *signature);

/* Euclidean distance between two signatures (double, summed in index order). */
double siamid_distance(const float *a, const float *b, int32_t dim);

/* Distance of `probe` to a template of `count` signatures (count x dim floats, row major)
 * under `rule`. Returns SIAMID_SUCCESS, SIAMID_E_ARGUMENT or SIAMID_E_TEMPLATE. */
int siamid_template_distance(const float *probe, const float *enrolled, int32_t count,
                             int32_t dim, int32_t rule, double *distance);

/* The threshold a template of `count` signatures is decided at: thresholds[k - 1] holds the
 * threshold of k-signature templates (the model header's table for the rule); a template
 * larger than the table takes its last entry (siamid.calibration.Calibration.threshold_for). */
double siamid_threshold_for(const double *thresholds, int32_t n_thresholds, int32_t count);

/* The decision: 1 accept (distance < threshold), 0 reject, < 0 an error (siamid_status).
 * `distance` (may be NULL) receives the template distance. */
int siamid_decide(const float *probe, const float *enrolled, int32_t count, int32_t dim,
                  int32_t rule, const double *thresholds, int32_t n_thresholds,
                  double *distance);

#ifdef __cplusplus
}
#endif

#endif /* SIAMID_REF_H */
