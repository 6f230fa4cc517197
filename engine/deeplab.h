/*
 * deeplab.h - public API of the deeplab inference engine (DeepLabV3-ResNet50/101).
 *
 * Usage:
 *
 *     dl_model *m;
 *     if (dl_model_load("weights/deeplabv3_resnet101.safetensors", NULL, &m) != DL_OK) {
 *         fprintf(stderr, "deeplab: %s\n", dl_last_error());
 *         return 1;
 *     }
 *     dl_image img;                               // RGB8, any size
 *     dl_image_read("photo.png", &img);
 *     float *x; int w, h;                         // 1 x 3 x h x w, normalised
 *     dl_preprocess(&img, 520, &x, &w, &h);       // shorter side -> 520, like torchvision
 *     float *logits = malloc(sizeof(float) * dl_model_info_of(m).num_classes * h * w);
 *     dl_forward(m, x, 1, h, w, logits);          // logits at the network input size
 *     ...
 *     dl_model_free(m);
 *
 * Layout: every tensor is float32, NCHW, contiguous: N images, C channels, H rows, W columns;
 * element (n, c, y, x) is at ((n * C + c) * H + y) * W + x.
 *
 * Errors: every function that can fail returns a dl_status. On failure, dl_last_error() returns
 * one line (no trailing newline) naming the file or the argument and what was expected. The
 * status values are also the command's exit codes (sysexits.h), documented in README.md.
 * The library never prints and never exits.
 */
#ifndef DEEPLAB_H
#define DEEPLAB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dl_status {
    DL_OK = 0,
    DL_EUSAGE = 64,       /* bad argument or option */
    DL_EDATA = 65,        /* malformed input: image, checkpoint or weights file */
    DL_ENOINPUT = 66,     /* input file missing or unreadable */
    DL_EUNAVAILABLE = 69, /* the requested device is not available */
    DL_EINTERNAL = 70,    /* internal error (a bug) */
    DL_ENOMEM = 71,       /* out of memory */
    DL_ECANTCREATE = 73,  /* cannot create the output file */
    DL_EIO = 74           /* read or write error */
} dl_status;

/* The calling thread's last error message ("" if none). */
const char *dl_last_error(void);

/* ---------------------------------------------------------------- model */

typedef enum dl_device { DL_DEVICE_AUTO = 0, DL_DEVICE_CPU, DL_DEVICE_CUDA } dl_device;

typedef struct dl_options {
    dl_device device; /* AUTO: the GPU when one is usable, else the CPU */
    int threads;      /* CPU threads; 0 = one per online core */
    int reference;    /* CPU: run the plain-C reference layers instead of the fast path */
} dl_options;

typedef struct dl_model_info {
    int depth;          /* ResNet depth: 50 or 101 */
    int num_classes;    /* output channels of the classifier (21 for the VOC model) */
    int64_t num_params; /* learned parameters used for inference (no aux head, no BN statistics) */
    const char *dtype;  /* storage dtype of those parameters in the file: "F32", "F16", "BF16", "mixed" */
    dl_device device;   /* the device the model runs on (never AUTO) */
    const char *path;   /* CPU: "reference" or the fast path's instruction set ("avx512", ...);
                           CUDA: "cuda" */
    int threads;        /* CPU threads used */
} dl_model_info;

typedef struct dl_model dl_model; /* opaque */

/* Loads a safetensors file with torchvision's tensor names, checks every tensor the network
 * needs (all problems reported in one error), infers depth and class count, folds BatchNorm. */
dl_status dl_model_load(const char *path, const dl_options *opt, dl_model **out);
/* A model with seeded random weights of the right shapes, for benchmarks without a weights
 * file: depth 50 or 101, 1 to 256 classes. */
dl_status dl_model_random(int depth, int classes, uint64_t seed, const dl_options *opt, dl_model **out);
void dl_model_free(dl_model *m);
dl_model_info dl_model_info_of(const dl_model *m);

/* Runs the network. input: n x 3 x h x w (normalised, see dl_preprocess);
 * logits: n x num_classes x h x w, the classifier output resized bilinearly to the input size
 * (align_corners=False), exactly what torchvision's model returns as "out".
 * Activation memory is planned for (n, h, w) and reused while the shape stays the same. */
dl_status dl_forward(dl_model *m, const float *input, int n, int h, int w, float *logits);

/* Peak activation + scratch bytes of the current plan (0 before the first forward). */
size_t dl_model_plan_bytes(const dl_model *m);

/* On a GPU: the device memory the model holds at most (weights, activations, workspace);
 * 0 on the CPU. */
size_t dl_model_device_bytes(const dl_model *m);

/* Per-layer profile. With profiling on, every dl_forward records each layer's time (on a GPU
 * with events, so the forward pass is slower but each layer's time is its own). */
void dl_model_set_profile(dl_model *m, int on);

typedef struct dl_layer_info {
    const char *name;                  /* torchvision's module name: "backbone.layer3.5.conv2" */
    const char *op;                    /* "conv", "maxpool", "avgpool", "resize" */
    int in_c, in_h, in_w;              /* per image, for the current input size */
    int out_c, out_h, out_w;
    int k, stride, dilation;           /* convolutions; 0 otherwise */
    double flops;                      /* per forward, all images: 2 x multiply-adds, padding taps included */
    double bytes;                      /* compulsory traffic: input + output (+ residual, weights) */
    double seconds;                    /* the last profiled forward */
} dl_layer_info;

int dl_model_layer_count(const dl_model *m);
dl_layer_info dl_model_layer(const dl_model *m, int i); /* valid after a forward */

/* ---------------------------------------------------------------- images */

typedef struct dl_image {
    int w, h, c;  /* c = 1 (gray), 3 (RGB) or 4 (RGBA), 8 bits per sample */
    uint8_t *px;  /* h rows of w * c bytes, interleaved, no padding */
} dl_image;

/* Decodes a PNG (8/16-bit, gray, gray+alpha, palette, tRNS, interlaced) to RGB8 (c = 3).
 * 16-bit samples keep their high byte; alpha is dropped, not composited. Images larger than
 * the limits below fail with DL_EDATA before any pixel memory is allocated. On failure *out is
 * zeroed and nothing needs freeing. */
dl_status dl_image_read(const char *path, dl_image *out);
void dl_image_free(dl_image *img);

/* Largest image dl_image_read accepts: max_pixels = w * h (default 100,000,000) and max_side
 * for each of w and h (default 65535). A value <= 0 restores the default. Process-wide: set it
 * before reading images, not while other threads read. */
void dl_set_image_limits(int64_t max_pixels, int max_side);

/* Writes img as PNG (c = 1 gray, 3 RGB, 4 RGBA) through a temporary file renamed into place:
 * on failure nothing is left at path. */
dl_status dl_png_write(const char *path, const dl_image *img);

/* Writes a palette PNG of w x h indices with the first ncolors entries of palette (RGB). */
dl_status dl_png_write_indexed(const char *path, const uint8_t *idx, int w, int h,
                               const uint8_t (*palette)[3], int ncolors);

/* Resizes src to dst->w x dst->h (dst->c = src->c, dst->px allocated by the caller) with
 * Pillow's antialiased bilinear filter, bit-exact with Pillow's Image.resize(BILINEAR).
 * c = 4 is treated as Pillow treats RGBA: colour is premultiplied by alpha for the resize.
 * Fails only on bad arguments (DL_EUSAGE) or when its scratch memory cannot be had (DL_ENOMEM). */
dl_status dl_resize_bilinear_u8(const dl_image *src, dl_image *dst);

/* The network input size for an image of w x h: the shorter side becomes `size` and the longer
 * side int(size * long / short), as torchvision's resize([size]); size <= 0 keeps w x h.
 * A longer side past INT_MAX is clamped to INT_MAX (dl_preprocess then refuses it). */
void dl_input_size(int w, int h, int size, int *out_w, int *out_h);

/* torchvision's preset: resize (as above) then (v / 255 - mean) / std per channel.
 * *out is a malloc'ed 1 x 3 x out_h x out_w tensor the caller frees. img must be RGB (c = 3);
 * a resized size over the image limits fails with DL_EDATA. */
dl_status dl_preprocess(const dl_image *img, int size, float **out, int *out_w, int *out_h);

/* Writes a little-endian float32 NumPy .npy file (atomically, like dl_png_write). */
dl_status dl_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape);

/* ---------------------------------------------------------------- outputs */

/* The PASCAL VOC class names, index 0 = "background"; NULL past the 21 classes. */
const char *dl_voc_class_name(int c);

/* The PASCAL VOC colour map: 256 RGB entries (class 0 black, 1 dark red, ...). */
const uint8_t (*dl_voc_palette(void))[3];

/* Class map at full resolution: logits (C x h x w, one image) are resized bilinearly
 * (align_corners=False) to W x H and the arg-max class of each pixel is written to labels
 * (W * H bytes). Works row by row: no C x H x W buffer is made. C must be <= 256. */
dl_status dl_labels_from_logits(const float *logits, int C, int h, int w, uint8_t *labels, int W, int H);

/* Foreground probability at network resolution: prob[i] = 1 - softmax(logits[:, i])[0]. */
void dl_foreground_prob(const float *logits, int C, int h, int w, float *prob);

/* Bilinear resize (align_corners=False, PyTorch semantics) of one float map h x w -> H x W. */
void dl_resize_map(const float *src, int h, int w, float *dst, int H, int W);

#ifdef __cplusplus
}
#endif
#endif
