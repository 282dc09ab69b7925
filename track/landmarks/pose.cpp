// Head pose: cv::solvePnP on the C++ side (gocv 0.31 has no SolvePnP).

#include "landmarks.h"

#include <opencv2/calib3d.hpp>
#include <opencv2/core.hpp>

#include <cmath>
#include <cstdio>
#include <exception>
#include <vector>

namespace {

void set_err(char* err, int errlen, const char* msg) {
    if (err != nullptr && errlen > 0) std::snprintf(err, static_cast<size_t>(errlen), "%s", msg);
}

double reprojection_rms(const std::vector<cv::Point3d>& obj, const std::vector<cv::Point2d>& img,
                        const cv::Matx33d& K, const cv::Mat& rvec, const cv::Mat& tvec) {
    std::vector<cv::Point2d> proj;
    cv::projectPoints(obj, rvec, tvec, K, cv::noArray(), proj);
    double s = 0;
    for (size_t i = 0; i < img.size(); ++i) {
        const cv::Point2d d = proj[i] - img[i];
        s += d.dot(d);
    }
    return std::sqrt(s / double(img.size()));
}

}  // namespace

extern "C" int lm_pose(const double* obj, const double* img, int n, double fx, double fy, double cx,
                       double cy, double* R, double* t, double* rms, char* err, int errlen) {
    try {
        if (n < 6) {
            set_err(err, errlen, "need at least 6 points");
            return -1;
        }
        std::vector<cv::Point3d> o(n);
        std::vector<cv::Point2d> p(n);
        for (int i = 0; i < n; ++i) {
            o[i] = cv::Point3d(obj[3 * i], obj[3 * i + 1], obj[3 * i + 2]);
            p[i] = cv::Point2d(img[2 * i], img[2 * i + 1]);
        }
        const cv::Matx33d K(fx, 0, cx, 0, fy, cy, 0, 0, 1);

        // Two starts, each refined by Levenberg-Marquardt (SOLVEPNP_ITERATIVE
        // with the start as its guess): EPnP's closed form, and the face
        // square-on to the camera at the distance its spread implies (the
        // object frame's y and z point opposite the camera's: a half turn
        // about x). The lower reprojection error wins.
        cv::Mat best_r, best_t;
        double best = INFINITY;
        auto consider = [&](cv::Mat r, cv::Mat tv) {
            if (!cv::solvePnP(o, p, K, cv::noArray(), r, tv, true, cv::SOLVEPNP_ITERATIVE)) return;
            if (!(tv.at<double>(2) > 0)) return;  // behind the camera
            const double e = reprojection_rms(o, p, K, r, tv);
            if (e < best) {
                best = e;
                best_r = r.clone();
                best_t = tv.clone();
            }
        };
        {
            cv::Mat r, tv;
            if (cv::solvePnP(o, p, K, cv::noArray(), r, tv, false, cv::SOLVEPNP_EPNP)) consider(r, tv);
        }
        {
            // Distance from the ratio of the spreads in the object and the image.
            cv::Point3d oc(0, 0, 0);
            cv::Point2d pc(0, 0);
            for (int i = 0; i < n; ++i) {
                oc += o[i];
                pc += p[i];
            }
            oc *= 1.0 / n;
            pc *= 1.0 / n;
            double so = 0, sp = 0;
            for (int i = 0; i < n; ++i) {
                const cv::Point3d d = o[i] - oc;
                so += d.x * d.x + d.y * d.y;
                const cv::Point2d e = p[i] - pc;
                sp += e.dot(e);
            }
            if (sp > 0 && so > 0) {
                const double z = fx * std::sqrt(so / sp);
                cv::Mat r = (cv::Mat_<double>(3, 1) << CV_PI, 0, 0);
                cv::Mat tv = (cv::Mat_<double>(3, 1) << (pc.x - cx) * z / fx - oc.x, (pc.y - cy) * z / fy + oc.y,
                              z + oc.z);
                consider(r, tv);
            }
        }
        if (best_r.empty()) {
            set_err(err, errlen, "solvePnP found no pose in front of the camera");
            return -1;
        }
        cv::Matx33d Rm;
        cv::Rodrigues(best_r, Rm);
        for (int i = 0; i < 9; ++i) R[i] = Rm.val[i];
        for (int i = 0; i < 3; ++i) t[i] = best_t.at<double>(i);
        *rms = best;
        return 0;
    } catch (const std::exception& e) {
        set_err(err, errlen, e.what());
    } catch (...) {
        set_err(err, errlen, "unknown C++ exception");
    }
    return -1;
}
