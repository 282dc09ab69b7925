// C interface between the Go package and its C++ side (predictor.cpp,
// pose.cpp). No C++ exception crosses it: every function catches and
// reports through its return value and err (a caller buffer of errlen
// bytes, NUL-terminated).
#ifndef AFFECTD_LANDMARKS_H
#define AFFECTD_LANDMARKS_H

#ifdef __cplusplus
extern "C" {
#endif

#define LM_PARTS 68

typedef struct LmPredictor LmPredictor;

// lm_load reads a dlib shape_predictor file with 68 parts; NULL on failure.
LmPredictor* lm_load(const char* path, char* err, int errlen);
void lm_free(LmPredictor* p);

// lm_fit runs the cascade on the BGR image mat (a cv::Mat*, CV_8UC3) from
// the box whose unit square maps onto (x0,y0)-(x1,y1), writing 68 (x, y)
// pairs to out. Returns 0 on success. Safe to call concurrently on one
// predictor: it only reads it.
int lm_fit(const LmPredictor* p, void* mat, float x0, float y0, float x1, float y1,
           float* out, char* err, int errlen);

// lm_mean_shape writes the predictor's initial (mean) shape, in unit-box
// coordinates, 68 (x, y) pairs.
void lm_mean_shape(const LmPredictor* p, float* out);

// Reference path (tests only): dlib's own shape_predictor, integer box and
// integer output points.
void* lm_ref_load(const char* path, char* err, int errlen);
void lm_ref_free(void* r);
int lm_ref_fit(void* r, void* mat, long left, long top, long right, long bottom,
               float* out, char* err, int errlen);

// lm_pose solves the perspective-n-point problem for n 3-D points obj
// (x, y, z triples) seen at img ((x, y) pairs) through a pinhole camera
// without distortion. It writes the rotation matrix R (row-major 3x3,
// object → camera), the translation t and the RMS reprojection error in
// pixels. Returns 0 on success.
int lm_pose(const double* obj, const double* img, int n, double fx, double fy, double cx,
            double cy, double* R, double* t, double* rms, char* err, int errlen);

#ifdef __cplusplus
}
#endif

#endif
