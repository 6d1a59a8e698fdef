module github.com/bpm-project/bpm

go 1.26.8
