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

#include "status.h" /* dl_status, dl_last_error (base/) */

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- model */

typedef enum dl_device { DL_DEVICE_AUTO = 0, DL_DEVICE_CPU, DL_DEVICE_CUDA } dl_device;

/* GPU backends: NATIVE runs the engine's own kernels (the .cu files of layers/); CUDNN runs the
 * same graph with every convolution through cuDNN (1x1 stride-1 ones through cuBLAS), libraries
 * loaded when such a model is made (libcudnn.so.9, libcublas.so.13): the yardstick for NATIVE. */
typedef enum dl_backend { DL_BACKEND_NATIVE = 0, DL_BACKEND_CUDNN } dl_backend;

/* FP32: products and sums in float32. TF32 (GPU only, native or cudnn backend): convolutions on
 * the tensor cores with their inputs rounded to 10 mantissa bits (about 3 decimal digits), sums
 * in float32 (the native TF32 path stores its activations rounded to tf32 between layers).
 * FP16 (the GPU's native backend): activations stored in fp16 between layers (11 significant
 * bits), products on the tensor cores, sums and logits in float32.
 * BF16: on the GPU's native backend as FP16 with 8 significant bits; on the CPU's fast path (CPUs
 * with AVX512_BF16, DL_EUNAVAILABLE elsewhere) weights and each convolution's inputs rounded to
 * bf16, products exact, sums in float32: twice the fp32 rate. With device AUTO it means the GPU
 * when one is usable, else the CPU. */
typedef enum dl_precision { DL_PRECISION_FP32 = 0, DL_PRECISION_TF32, DL_PRECISION_FP16, DL_PRECISION_BF16 } dl_precision;

/* The calling core's multiply-add peak in GFLOP/s, measured (about 30 ms of independent
 * AVX-512 FMA or, for BF16, vdpbf16ps chains on the thread's CPU clock); 0 without AVX-512 (or
 * AVX512_BF16 for BF16). What `deeplab bench --layers` divides by for its share of peak on the CPU. */
double dl_cpu_peak_gflops(dl_precision precision);

/* Whether this machine's CPU runs DL_PRECISION_BF16 (AVX512_BF16 and the avx512 kernels; not when
 * DEEPLAB_ISA forces a lesser instruction set). */
int dl_cpu_has_bf16(void);

/* The GPU's measured multiply-add peak for the precision's tensor-core instruction (mma.sync;
 * FP32: the FFMA units) in GFLOP/s: about 0.1 s of independent chains on every multiprocessor;
 * 0 without a usable GPU. What `deeplab bench --layers` divides by for its share of peak on the GPU. */
double dl_cuda_peak_gflops(dl_precision precision);

typedef struct dl_options {
    dl_device device; /* AUTO: the GPU when one is usable, else the CPU */
    int threads;      /* CPU threads; 0 = one per online core */
    int reference;    /* CPU: run the plain-C reference layers instead of the fast path */
    dl_backend backend;     /* CUDNN needs the GPU (DL_EUSAGE with device CPU or reference; with
                               AUTO it means CUDA, so no usable GPU is DL_EUNAVAILABLE) */
    dl_precision precision; /* TF32 and FP16 need the GPU; BF16 the GPU's native backend or the CPU's
                               fast path (DL_EUSAGE otherwise; with device AUTO: the GPU if usable) */
} dl_options;

typedef struct dl_model_info {
    int depth;          /* ResNet depth: 50 or 101 */
    int num_classes;    /* output channels of the classifier (21 for the VOC model) */
    int64_t num_params; /* learned parameters used for inference (no aux head, no BN statistics) */
    const char *dtype;  /* storage dtype of those parameters in the file: "F32", "F16", "BF16", "mixed" */
    dl_device device;   /* the device the model runs on (never AUTO) */
    const char *path;   /* CPU: "reference" or the fast path's instruction set ("avx512", "avx512-bf16", ...);
                           CUDA: "cuda" (native kernels) or "cudnn" */
    int threads;        /* CPU threads used */
    dl_backend backend;     /* NATIVE on the CPU */
    dl_precision precision;
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

/* What a forward pass can return, each for all n images at the input size h x w; NULL members
 * are not made (on a GPU, not computed there and not copied back: the logits of a 520x520 image
 * are 23 MB, its class mass 1 MB). */
typedef struct dl_outputs {
    float *logits;          /* n x num_classes x h x w: dl_forward's */
    float *mass;            /* n x h x w: per pixel, the softmax mass of the classes flagged in
                               classes (dl_class_prob of the logits) */
    const uint8_t *classes; /* num_classes flags, or NULL: every class but 0 (dl_foreground_prob) */
    uint8_t *labels;        /* n x h x w: the arg-max class (the first on ties) */
} dl_outputs;

/* dl_forward with a choice of outputs: at least one of logits, mass, labels. */
dl_status dl_forward_outputs(dl_model *m, const float *input, int n, int h, int w, const dl_outputs *out);

/* On a GPU: the device time of the last forward pass's network, from the input on the device to
 * its outputs on the device (CUDA events; the copies to and from the host excluded), in seconds;
 * 0 on the CPU. */
double dl_model_device_seconds(const dl_model *m);

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
    const char *kernel;                /* what ran it: convolutions on the CPU's fast path "direct",
                                          "winograd", "direct-bf16", "winograd-bf16"; the reference
                                          path "reference"; on the GPU the kernel ("tc128x128 bf16,
                                          implicit gemm"); "" for other layers on the CPU */
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

/* Limits inside image files, for files from strangers: the largest PNG ancillary chunk (text,
 * ICC profile, EXIF, ...; default 8 MiB) and the most scans of a progressive JPEG (default 500:
 * real files have about 10, and each scan costs a pass over the whole image). A file over a
 * limit fails with DL_EDATA. A value <= 0 restores the default. Process-wide, as above. */
void dl_set_png_chunk_limit(int64_t max_bytes);
void dl_set_jpeg_scan_limit(int max_scans);

/* Writes img as PNG (c = 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA) through a temporary file renamed into place:
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

/* Foreground probability at network resolution: prob[i] = 1 - softmax(logits[:, i])[0], computed
 * as the mass of the other classes (dl_class_prob with classes NULL). */
void dl_foreground_prob(const float *logits, int C, int h, int w, float *prob);

/* Bilinear resize (align_corners=False, PyTorch semantics) of one float map h x w -> H x W. */
void dl_resize_map(const float *src, int h, int w, float *dst, int H, int W);

/* ---------------------------------------------------------------- JPEG, standard streams */

/*
 * dl_image_read also decodes JPEG (baseline and progressive; gray, YCbCr, RGB,
 * CMYK and YCCK, CMYK taken as Adobe's inverted CMYK), exactly as Pillow's
 * ImageOps.exif_transpose(Image.open(f).convert("RGB")): the EXIF orientation (1 to 8) is applied,
 * so the pixels come out the right way up. A JPEG cut short is an error (DL_EDATA), and the
 * scans of a progressive JPEG are limited (dl_set_jpeg_scan_limit).
 * The path "-" reads standard input; every writer (dl_png_write too) writes standard output for "-".
 */
typedef enum dl_file_format {
    DL_FORMAT_AUTO = 0,
    DL_FORMAT_PNG,
    DL_FORMAT_JPEG,
    DL_FORMAT_ZIP /* dl_cutout_encode only: color.jpg (the colours) + alpha.png (the alpha), as remove.bg */
} dl_file_format;

/* DL_FORMAT_JPEG for a name ending in .jpg or .jpeg (any case), DL_FORMAT_PNG otherwise. */
dl_file_format dl_format_of_path(const char *path);

/* Writes img (c = 1 gray or 3 RGB) as a baseline JFIF JPEG of quality 1 to 100 with 4:2:0
 * chroma (Pillow's defaults), atomically like dl_png_write. c = 4 fails with DL_EUSAGE: JPEG
 * has no alpha channel. */
dl_status dl_jpeg_write(const char *path, const dl_image *img, int quality);

/* dl_png_write or dl_jpeg_write; DL_FORMAT_AUTO picks by the path's extension. */
dl_status dl_image_write(const char *path, const dl_image *img, dl_file_format format, int jpeg_quality);

/* The same in memory, for images that come and go over a network: dl_image_decode is
 * dl_image_read of size bytes at data (name is what messages call it); dl_image_encode writes
 * the PNG (DL_FORMAT_AUTO too) or JPEG bytes dl_image_write would, into *data (malloc'ed, the
 * caller frees it; NULL on failure), *size bytes. */
dl_status dl_image_decode(const char *name, const void *data, size_t size, dl_image *out);
dl_status dl_image_encode(const dl_image *img, dl_file_format format, int jpeg_quality, uint8_t **data, size_t *size);

/* 1 when the last dl_image_read or dl_image_decode of this thread failed because the image is
 * over the limits of dl_set_image_limits (a DL_EDATA that is the size's fault, not the file's). */
int dl_image_too_large(void);

/* Scales img down in place (Pillow's bilinear, as dl_resize_bilinear_u8), keeping its aspect,
 * to the largest size of at most max_pixels pixels: w' = floor(w * sqrt(max_pixels / (w h)))
 * (at least 1), h' likewise. An image already within max_pixels, or max_pixels <= 0, is left. */
dl_status dl_image_fit_pixels(dl_image *img, int64_t max_pixels);

/* ---------------------------------------------------------------- edge refinement */

/*
 * The network sees the photo at about 520 pixels and predicts at 1/8 of that: its probability
 * map, upsampled to the photo, has edges some 16 network pixels wide (30 on a 1080p photo) that
 * ignore the photo's own edges. dl_refine redraws them from the photo with a guided filter (He, Sun and Tang 2010): in
 * every window the output is a linear function of the photo's colour, a . RGB + b, fitted to the
 * map by least squares, so it changes where the colour changes. Pixels where the map is sure
 * (near 0 or 1) weigh 65 times more in the fit than the smeared band, which therefore takes its
 * values from the colours around it. Hints (DL_HINT_KEEP / DL_HINT_ERASE per pixel) enter the
 * fit as sure pixels of weight 16 and are forced to 1 or 0 in the result: a correction painted
 * near an edge spreads over its own colour up to the edge instead of stopping at the stroke.
 * The statistics are gathered on cells of radius/4 pixels and interpolated back (He and Sun's
 * fast guided filter), so the cost is about that of reading the photo. Two passes: the first
 * (radius) is stretched so that the band's leftovers go to 0 or 1, the second (radius / 4)
 * restores soft transitions. Formulas and reasons: engine/guided_filter.h.
 */
typedef struct dl_refine_params {
    int radius; /* window radius in photo pixels, >= 1 (dl_refine_auto_radius: two network cells) */
    float eps;  /* regularisation in squared colour units (colours in [0, 1]): 1e-4 follows faint
                   edges, 1e-1 hardly changes the map; DL_REFINE_EPS by default */
} dl_refine_params;

#define DL_REFINE_EPS 1e-3f

enum { DL_HINT_NONE = 0, DL_HINT_KEEP = 1, DL_HINT_ERASE = 2 };

/* The default radius for a W x H photo run by the network at net_w x net_h: two cells of the
 * network's output grid (16 network pixels) in photo pixels, at least 2 (33 for a 1920 x 1080
 * photo run at 924 x 520). */
int dl_refine_auto_radius(int W, int H, int net_w, int net_h);

/* A refiner runs dl_refine on one device and keeps its scratch memory (on a GPU also its own
 * stream) from call to call. One per thread. device: DL_DEVICE_CPU, DL_DEVICE_CUDA (fails with
 * DL_EUNAVAILABLE without a usable GPU) or DL_DEVICE_AUTO (the GPU when usable). */
typedef struct dl_refiner dl_refiner;
dl_status dl_refiner_create(dl_device device, dl_refiner **out);
void dl_refiner_free(dl_refiner *r);
dl_device dl_refiner_device(const dl_refiner *r);

/* alpha (W x H, in [0, 1]) = the refined prob (W x H) guided by photo (RGB8, W x H); hints:
 * NULL or W x H bytes of DL_HINT_*. alpha may be prob. The CPU and the GPU compute the same
 * formulas (tests/test_refine_cuda.c holds them to 1/255). */
dl_status dl_refine(dl_refiner *r, const dl_image *photo, const float *prob, const uint8_t *hints,
                    const dl_refine_params *p, float *alpha);

/* Colour decontamination: the colour of every semi-transparent pixel (alpha 1 to 254 in 8
 * bits) becomes an estimate of the subject's own colour, with the old background's share taken
 * out, so that a cut-out on a new background shows no fringe of the old one. Method: Forte and
 * Pitie's blur fusion (2021): with local alpha-weighted means F' of the subject's colour and B'
 * of the background's, F = F' + alpha (I - alpha F' - (1 - alpha) B'), run twice (a wide window,
 * then a narrow one). rgb (RGB8) is changed in place; other pixels keep their colour. */
dl_status dl_decontaminate(dl_image *rgb, const float *alpha);

/* ---------------------------------------------------------------- choosing what to keep */

/* The index of a PASCAL VOC class name ("person", "tvmonitor", ...), or -1. */
int dl_voc_class_index(const char *name);

/* prob[i] = the softmax mass of the chosen classes at pixel i of logits (C x h x w):
 * the sum over classes c with classes[c] != 0 of softmax(logits[:, i])[c], in float.
 * classes: C flags; NULL = every class but 0, the background (dl_foreground_prob's map). */
void dl_class_prob(const float *logits, int C, int h, int w, const uint8_t *classes, float *prob);

typedef struct dl_point {
    int x, y;
} dl_point;

/* Objects are the connected regions (8-neighbours) of pixels with alpha >= 0.5. labels (W x H):
 * 0 outside objects, else the object's number, 1 .. *count, in raster order of first pixel. */
dl_status dl_objects(const float *alpha, int W, int H, int32_t *labels, int *count);

/* Keeps the objects under the points and, if largest, the object with the most pixels; the
 * other objects become transparent, and so does every pixel with alpha < 0.5 (the soft edge)
 * farther than fringe pixels (in x and in y) from a kept object. *missed (may be NULL): how
 * many points were on no object (they keep nothing). Points outside the image fail with
 * DL_EUSAGE. */
dl_status dl_keep_objects(float *alpha, int W, int H, const dl_point *points, int npoints, int largest,
                          int fringe, int *missed);

/* A brush stroke: a disc of the radius dragged along the points (one point: a dot). Coordinates
 * are photo pixels, continuous: pixel (x, y) covers [x, x + 1) x [y, y + 1). */
typedef struct dl_stroke {
    uint8_t hint;    /* DL_HINT_KEEP or DL_HINT_ERASE */
    float radius;    /* >= 0.5 photo pixels */
    int npoints;     /* >= 1 */
    const float *xy; /* npoints (x, y) pairs */
} dl_stroke;

/* Paints the strokes in order (a later stroke wins where they cross) into hints, a W x H map of
 * a photo of ref_w x ref_h pixels (the same size, or scaled for a preview; 0 = W x H): a pixel
 * whose centre lies within the radius of a stroke's path gets the stroke's hint (on a scaled
 * map, within at least half a map pixel, so that thin strokes stay visible). Bad strokes fail
 * with DL_EUSAGE. */
dl_status dl_paint_strokes(uint8_t *hints, int W, int H, int ref_w, int ref_h, const dl_stroke *strokes, int n);

/* Hints from brush images (any colour type, W x H, or NULL): DL_HINT_KEEP where keep is white
 * (luma >= 128), DL_HINT_ERASE where erase is white (erase wins where both are), else
 * DL_HINT_NONE. A mask of another size fails with DL_EUSAGE. */
dl_status dl_hints_from_masks(const dl_image *keep, const dl_image *erase, int W, int H, uint8_t *hints);

/* ---------------------------------------------------------------- cut-outs */

typedef enum dl_cutout_format {
    DL_CUTOUT_RGBA = 0, /* the photo with alpha; RGB when composited over an opaque background */
    DL_CUTOUT_MASK,     /* the alpha alone, as gray */
    DL_CUTOUT_OVERLAY,  /* the photo tinted with each pixel's class colour, with a legend */
    DL_CUTOUT_LABELS    /* the class of every kept pixel (alpha >= 0.5), 0 elsewhere (palette) */
} dl_cutout_format;

typedef enum dl_background { DL_BG_NONE = 0, DL_BG_COLOR, DL_BG_IMAGE } dl_background;

/* A length in pixels, or in percent of a reference length (each use says which). */
typedef struct dl_length {
    float value;
    int percent;
} dl_length;

typedef struct dl_cutout_options {
    const uint8_t *classes;   /* C flags of the classes to keep; NULL = every class but background */
    const float *class_prob;  /* their mass at network resolution (dl_class_prob) when the caller has
                                 it already (an editor's renders of one photo); NULL: computed */
    int refine;               /* 1: dl_refine; 0: the network's map as upsampled */
    dl_refine_params refine_params; /* radius 0: dl_refine_auto_radius; eps 0: DL_REFINE_EPS */
    int decontaminate;        /* dl_decontaminate the colours (rgba format) */
    const dl_point *keep_at;  /* keep only the objects under these points ... */
    int nkeep_at;
    int largest;              /* ... and/or the largest object */
    float threshold;          /* > 0: hard alpha, 1 where alpha >= threshold, else 0 */
    const dl_image *keep_mask, *erase_mask; /* brush images of the photo's size, or NULL */
    const dl_stroke *strokes; /* painted over the masks' hints, in order */
    int nstrokes;
    int roi;                  /* keep only what lies in the box x0, y0 (inclusive), x1, y1 (exclusive); */
    dl_length roi_box[4];     /* percent: of the photo's width (x) or height (y) */
    dl_cutout_format format;
    dl_background background; /* rgba format: composite over bg_color or bg_image */
    uint8_t bg_color[4];      /* RGBA; alpha 255 gives an opaque RGB result */
    const dl_image *bg_image; /* RGB of any size: scaled to cover the photo, centred */
    float scale;              /* rgba, mask: 0 keeps the subject's size; 0 < scale <= 1 scales its box
                                 (Pillow's bilinear) to fit scale x the picture's width and height */
    int position;             /* rgba, mask: move the subject's box so that position_x, position_y */
    float position_x, position_y; /* (0 to 1) of the free space lie left of and above it; without
                                 position a scaled subject is centred (0.5, 0.5) */
    int crop;                 /* crop the output to the subject's box, crop_margin wider */
    dl_length crop_margin[4]; /* top, right, bottom, left; percent: of the subject's height or width */
    int ref_w, ref_h;         /* > 0: the photo is a scaled copy of a ref_w x ref_h one, in whose pixels
                                 keep_at, strokes, roi, crop margins and refine radius are given (the
                                 masks may be either size): a preview of the full-size cut-out */
    int stats;                /* fill share[] (costs a full-resolution class map) */
} dl_cutout_options;

typedef struct dl_cutout {
    dl_image img;             /* RGBA, RGB, gray (mask) or class indices (labels, indexed = 1) */
    int indexed;
    int box_x, box_y, box_w, box_h; /* the subject's box in the photo (after scale and position):
                                       pixels whose alpha rounds to > 0 in 8 bits; box_w = box_h
                                       = 0 when there are none */
    int crop_x, crop_y;       /* where img's top-left pixel lies in the photo (0, 0 without crop) */
    int64_t subject_pixels;   /* pixels with alpha >= 50% (0: nothing was found to keep) */
    int missed_points;        /* keep_at points on no object */
    int num_classes;
    double share[256];        /* with stats: fraction of the photo's pixels of each class (arg-max) */
} dl_cutout;

/* The classes present in share (share[c] > 0, c < C), largest share first (ties: the lower
 * class first): their indices in order, their count returned. */
int dl_classes_by_share(const double *share, int C, int *order);

/* The name of class c of a model with num_classes classes: the VOC name for a 21-class model,
 * else "class C". */
void dl_class_label(int c, int num_classes, char *buf, size_t len);

/* The cut-out of photo (RGB8, W x H) from the network's logits (C x net_h x net_w, one image,
 * as dl_forward returns them for the preprocessed photo). Steps: class mass (dl_class_prob),
 * upsampling, hints, refinement on r's device (r may be NULL when o->refine is 0), object
 * selection (fringe = the refinement radius), hints forced again, threshold, then the format,
 * background and crop. On failure *out is zeroed. */
dl_status dl_cutout_make(const dl_image *photo, const float *logits, int C, int net_h, int net_w,
                         const dl_cutout_options *o, dl_refiner *r, dl_cutout *out);
void dl_cutout_free(dl_cutout *c);

/* Writes the cut-out: PNG or JPEG by format (AUTO: the path's extension); labels always as a
 * palette PNG with the VOC colours. */
dl_status dl_cutout_write(const char *path, const dl_cutout *c, dl_file_format format, int jpeg_quality);

/* The bytes dl_cutout_write would write, in memory (*data malloc'ed, the caller frees it):
 * DL_FORMAT_PNG or JPEG; AUTO: JPEG when the picture is opaque colour (RGB), else PNG, as
 * remove.bg's format=auto; ZIP: a zip (stored) of color.jpg, the colours, and alpha.png, the
 * alpha as gray (all 255 for an opaque picture), for rgba pictures. */
dl_status dl_cutout_encode(const dl_cutout *c, dl_file_format format, int jpeg_quality, uint8_t **data, size_t *size);

/* ---------------------------------------------------------------- cut-out requests */

/*
 * One description of a cut-out request: what to keep, the edges, hints, the picture, how big
 * the photo may be. `deeplab rmbg`'s options and the HTTP API's fields are both turned into one
 * through dl_cutout_request_set, by the same names (rmbg's long options without the dashes), so
 * the two cannot drift apart:
 *
 *     classes LIST      VOC names or numbers, comma-separated  largest           (flag)
 *     keep-at X,Y       repeatable, up to 64 points             threshold T       0 < T <= 1
 *     refine guided|none    refine-radius N (1..4096)    refine-eps E    decontaminate (flag)
 *     keep-mask FILE, erase-mask FILE, bg-image FILE    (paths: dl_cutout_request_read_images)
 *     stroke keep|erase,R,X,Y[,X,Y...]   repeatable: a brush stroke of radius R through the points
 *     roi X0 Y0 X1 Y1   lengths: 10, 10px or 10% (of the photo's width / height)
 *     format rgba|mask|overlay|labels     bg-color RRGGBB[AA], RGB[A] or a CSS colour name
 *     scale original|N% (10..100)          position original|center|X%[ Y%]
 *     crop [MARGIN]     a flag, or a margin in pixels (true/false also; rmbg's --crop[=MARGIN])
 *     crop-margin M     1, 2 or 4 lengths as CSS's margin (px up to 500, % of the subject up to 50)
 *     jpeg-quality Q (1..100)              megapixels MP: scale the photo down to at most MP first
 *
 * Flags take no value, or true/false (also 1/0). A value that is not understood fails with DL_EUSAGE
 * and one line that starts with `name` (the field as the caller spells it: "--threshold" for
 * the command line, "threshold" for the API) and says what it takes.
 */
#define DL_REQUEST_MAX_POINTS 64
#define DL_REQUEST_MAX_STROKES 4096
#define DL_REQUEST_MAX_STROKE_POINTS 1000000 /* all strokes together */

typedef struct dl_cutout_request {
    dl_cutout_options cut; /* the options; its pointers are set by dl_cutout_request_options */
    uint8_t classes[256];
    int have_classes;
    dl_point points[DL_REQUEST_MAX_POINTS];
    dl_stroke *strokes;    /* nstrokes (cut.nstrokes), their points in stroke_xy */
    float *stroke_xy;
    int stroke_points, strokes_cap, stroke_xy_cap;
    double megapixels;     /* > 0: dl_image_fit_pixels(photo, megapixels * 1e6) before anything */
    int jpeg_quality;      /* 1..100, default 90 */
    const char *keep_mask_path, *erase_mask_path, *bg_image_path; /* as given (not copied) */
    dl_image keep_mask, erase_mask, bg_image; /* read or set images (owned) */
} dl_cutout_request;

/* rmbg's defaults: every class but background, guided refinement, rgba, JPEG quality 90. */
void dl_cutout_request_init(dl_cutout_request *r);
void dl_cutout_request_free(dl_cutout_request *r);
/* The kind of a key: 0 unknown, 1 a flag, 2 takes a value, 3 a flag that may take a value (crop). */
int dl_cutout_request_key(const char *key);
/* Sets key from value (NULL for a flag) as described above. */
dl_status dl_cutout_request_set(dl_cutout_request *r, const char *key, const char *value, const char *name);
/* Sets the keep-mask, erase-mask or bg-image picture (taken over: *img is zeroed). */
dl_status dl_cutout_request_set_image(dl_cutout_request *r, const char *key, dl_image *img);
/* Reads the pictures named by paths (keep-mask, erase-mask, bg-image, in that order). */
dl_status dl_cutout_request_read_images(dl_cutout_request *r);
/* The options for dl_cutout_make, pointing into r (valid while r is, unchanged). */
dl_cutout_options dl_cutout_request_options(const dl_cutout_request *r);
/* DL_EUSAGE when the classes asked for are past a model's num_classes ("NAME: class 40, but the
 * model has classes 0 to 20"). */
dl_status dl_cutout_request_check_classes(const dl_cutout_request *r, int num_classes, const char *name);

#ifdef __cplusplus
}
#endif
#endif
