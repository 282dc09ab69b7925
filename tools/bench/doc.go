// Command bench measures affectd's stages side by side in one run, so that
// ratios hold on noisy machines. Each subcommand's last line is a fixed,
// machine-readable summary.
//
//	go run ./tools/bench infer [-model M] [-threads N] [-seconds S]
//	go run ./tools/bench track [-clip FILE] [-detect-every K] [-front]
//	go run ./tools/bench e2e [-streams N] [-model M]
//	go run ./tools/bench latency [-clip one_face] [-size 1280x720]
//	go run ./tools/bench analyze [-rounds 3] [-batch N] [-threads N]
//	go run ./tools/bench fidelity [-size 640x360] [-model none]
//	go run ./tools/bench cluster [-nodes 3] [-streams 6] [-kills 20] [-ttl 3s]
package main
