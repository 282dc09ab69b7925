// The face verifier: dlib's HOG + linear SVM frontal face detector (Dalal &
// Triggs features, dlib's get_frontal_face_detector, trained on the iBUG
// 300-W images' faces), run on a crop around a BlazeFace detection. It
// answers whether the window BlazeFace found looks like a face to a
// second, independent model of another kind.

#include "verify.h"

#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/opencv.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <vector>

namespace {

void set_err(char* err, int errlen, const char* msg) {
    if (err != nullptr && errlen > 0) std::snprintf(err, errlen, "%s", msg);
}

double iou(const dlib::rectangle& a, const dlib::rectangle& b) {
    const dlib::rectangle in = a.intersect(b);
    if (in.is_empty()) return 0;
    const double i = double(in.area());
    return i / (double(a.area()) + double(b.area()) - i);
}

}  // namespace

extern "C" void* fv_new(char* err, int errlen) {
    try {
        return new dlib::frontal_face_detector(dlib::get_frontal_face_detector());
    } catch (const std::exception& e) {
        set_err(err, errlen, e.what());
    } catch (...) {
        set_err(err, errlen, "unknown error");
    }
    return nullptr;
}

extern "C" void fv_free(void* d) { delete static_cast<dlib::frontal_face_detector*>(d); }

extern "C" int fv_score(void* d, void* mat, float x, float y, float w, float h, int size, double* score,
                        char* err, int errlen) {
    try {
        auto* det = static_cast<dlib::frontal_face_detector*>(d);
        const cv::Mat& img = *static_cast<cv::Mat*>(mat);
        if (img.empty() || img.type() != CV_8UC3) {
            set_err(err, errlen, "not a BGR image");
            return 1;
        }
        if (!(w > 1 && h > 1) || size < 40) {
            set_err(err, errlen, "box too small");
            return 1;
        }
        // The crop: the box widened to 1.8 times its size (the HOG window
        // sees some context around the face), clamped to the image.
        const float cx = x + w / 2, cy = y + h / 2, half = 0.9f * std::max(w, h);
        const int x0 = std::max(0, int(cx - half)), y0 = std::max(0, int(cy - half));
        const int x1 = std::min(img.cols, int(cx + half)), y1 = std::min(img.rows, int(cy + half));
        if (x1 - x0 < 8 || y1 - y0 < 8) {
            set_err(err, errlen, "box outside the image");
            return 1;
        }
        const double s = double(size) / double(std::max(w, h));
        cv::Mat crop;
        cv::resize(img(cv::Rect(x0, y0, x1 - x0, y1 - y0)), crop, cv::Size(), s, s,
                   s < 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
        dlib::cv_image<dlib::bgr_pixel> dimg(crop);
        std::vector<dlib::rect_detection> dets;
        (*det)(dimg, dets, -1.0);  // report windows down to a score of −1
        const dlib::rectangle box(long((x - x0) * s), long((y - y0) * s), long((x - x0 + w) * s),
                                  long((y - y0 + h) * s));
        double best = -10;
        for (const auto& r : dets) {
            if (iou(r.rect, box) >= 0.3) best = std::max(best, r.detection_confidence);
        }
        *score = best;
        return 0;
    } catch (const std::exception& e) {
        set_err(err, errlen, e.what());
    } catch (...) {
        set_err(err, errlen, "unknown error");
    }
    return 1;
}
