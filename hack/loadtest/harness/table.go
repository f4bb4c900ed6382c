package harness

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"
)

// WriteTable writes the report as one Markdown table, preceded by a line saying how it was
// measured and followed by the first error of each server that had any.
func WriteTable(w io.Writer, rep *Report) error {
	c := rep.Config
	var b strings.Builder
	fmt.Fprintf(&b, "Each server: %s at maximum throughput (%d workers), then %s at %d/s, after a %s warm-up; "+
		"one %d-byte Pod CREATE review over TLS with HTTP/2 and keep-alive; %s/%s, %d CPUs shared by client and server, %s.\n\n",
		c.Duration, c.Workers, c.Duration, c.Rate, c.Warmup, rep.ReviewBytes, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	at := fmt.Sprintf("@%d/s", c.Rate)
	fmt.Fprintf(&b, "| server | max reviews/s | p50 (max) | p99 (max) | p99 %s | CPU per 1k reviews (max) | CPU per 1k reviews (%s) | peak RSS | errors | vs allow-all: reviews/s | p99 %s | CPU %s |\n",
		at, at, at, at)
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	var base *Row
	for i := range rep.Rows {
		if rep.Rows[i].Server == AllowAll {
			base = &rep.Rows[i]
		}
	}
	for _, r := range rep.Rows {
		p99At := ms(r.Fixed.P99)
		if r.Fixed.Throughput < 0.95*float64(c.Rate) { // could not keep up: the figure is not at the rate
			p99At += fmt.Sprintf(" (only %.0f/s)", r.Fixed.Throughput)
		}
		thr, lat, cpu := "–", "–", "–"
		if base != nil {
			thr = ratio(r.Max.Throughput, base.Max.Throughput)
			lat = ratio(float64(r.Fixed.P99), float64(base.Fixed.P99))
			cpu = ratio(float64(r.Fixed.CPUPer1k()), float64(base.Fixed.CPUPer1k()))
		}
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %s | %s | %.1f MiB | %d of %d | %s | %s | %s |\n",
			r.Server, r.Max.Throughput, ms(r.Max.P50), ms(r.Max.P99), p99At,
			cpuMS(r.Max.CPUPer1k()), cpuMS(r.Fixed.CPUPer1k()), float64(r.PeakRSS)/(1<<20),
			r.Errors(), r.Max.Requests+r.Fixed.Requests, thr, lat, cpu)
	}
	for _, r := range rep.Rows {
		for _, p := range []Phase{r.Max, r.Fixed} {
			if p.FirstError != "" {
				fmt.Fprintf(&b, "\n%s: first error: %s\n", r.Server, p.FirstError)
				break
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	if f < 10 {
		return fmt.Sprintf("%.2f ms", f)
	}
	return fmt.Sprintf("%.1f ms", f)
}

func cpuMS(d time.Duration) string {
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}
