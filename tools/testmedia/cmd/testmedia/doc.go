// Command testmedia makes the synthetic test clips of package testmedia
// under <cache>/media and prints their paths.
//
//	go run ./tools/testmedia/cmd/testmedia -all
//	go run ./tools/testmedia/cmd/testmedia -clip reenter -size 640x360 -y4m
package main
