package config

import (
	"errors"
	"math"
	"regexp"
	"strconv"
)

// Quantity is a parsed Kubernetes-style resource quantity.
type Quantity struct {
	// Value is the amount in base units: CPUs for CPU, bytes for memory.
	Value float64
}

// CPUMillis returns the quantity in thousandths of a CPU, rounded up.
func (q Quantity) CPUMillis() int64 { return int64(math.Ceil(q.Value*1000 - 1e-9)) }

// Bytes returns the quantity in bytes, rounded up.
func (q Quantity) Bytes() int64 { return int64(math.Ceil(q.Value - 1e-9)) }

// quantityRE is the Kubernetes quantity grammar: a decimal number, then a
// binary suffix (Ki..Ei), a decimal suffix (n, u, m, k, M..E) or a decimal
// exponent (e3, E-2). Signs are not accepted: a limit is never negative.
var quantityRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$`)

var suffixes = map[string]float64{
	"": 1, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
	"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60,
}

// ParseQuantity parses a quantity such as "500m", "4", "0.5", "512Mi", "8Gi"
// or "1e9".
func ParseQuantity(s string) (Quantity, error) {
	m := quantityRE.FindStringSubmatch(s)
	if m == nil {
		return Quantity{}, errors.New("not a quantity (for example 500m or 2 for CPU, 512Mi or 8Gi for memory)")
	}
	num, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return Quantity{}, errors.New("not a quantity")
	}
	suf := m[2]
	mult, ok := suffixes[suf]
	if !ok { // exponent
		exp, err := strconv.Atoi(suf[1:])
		if err != nil || exp > 30 || exp < -30 {
			return Quantity{}, errors.New("exponent out of range")
		}
		mult = math.Pow10(exp)
	}
	v := num * mult
	if math.IsInf(v, 0) || v > 1<<62 {
		return Quantity{}, errors.New("quantity too large")
	}
	return Quantity{Value: v}, nil
}
