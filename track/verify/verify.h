// C interface of the face verifier (verify.cpp). No C++ exception crosses
// it: failures come back as a non-zero return and a message in err (a
// caller buffer of errlen bytes, NUL-terminated).
#ifndef AFFECTD_VERIFY_H
#define AFFECTD_VERIFY_H

#ifdef __cplusplus
extern "C" {
#endif

// fv_new makes dlib's HOG frontal face detector (its five filters: front,
// turned left and right, rolled left and right); NULL on failure.
void* fv_new(char* err, int errlen);
void fv_free(void* d);

// fv_score looks for a face in the BGR image mat (a cv::Mat*, CV_8UC3)
// around the box (x, y, w, h), rescaled so that the box is size pixels
// wide, and writes the best detector score of a window that overlaps the
// box (IoU >= 0.3) to score (-10 when none is found at all). Not safe for
// concurrent use on one detector. Returns 0 on success.
int fv_score(void* d, void* mat, float x, float y, float w, float h, int size, double* score, char* err, int errlen);

#ifdef __cplusplus
}
#endif

#endif
