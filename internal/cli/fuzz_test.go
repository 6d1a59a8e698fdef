package cli

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzFlags feeds arbitrary command lines to the command tree's parser
// (command lookup, flag parsing, argument and output-format checks) without
// running any command, which could start a manager. It must never panic,
// and a usage problem must map to the usage exit code.
func FuzzFlags(f *testing.F) {
	for _, line := range []string{
		"deploy --remote aws --package my-blueprint",
		"deploy --remote-config ./production.toml --package my-blueprint",
		"list --remote",
		"list --remote=aws -o json",
		"status --remote --instance bp-abc123",
		"terminate --remote --instance bp-abc123",
		"estimate-cost --remote aws --package my-blueprint",
		"costs --remote aws",
		"set-alert --remote aws --monthly-limit 100",
		"logs -f --tail 10 bp-x",
		"list -o xml",
		"keys set NAME",
	} {
		f.Add(line)
	}
	f.Fuzz(func(t *testing.T, line string) {
		var out bytes.Buffer
		root := NewRootCommand(&IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &out})
		cmd, rest, err := root.Find(strings.Fields(line))
		if err != nil {
			return
		}
		if cmd.DisableFlagParsing {
			return
		}
		if err := cmd.ParseFlags(rest); err != nil {
			if code := ExitCode(cmd.FlagErrorFunc()(cmd, err)); code != ExitUsage {
				t.Fatalf("flag error %v mapped to exit %d", err, code)
			}
			return
		}
		if cmd.Args != nil {
			_ = cmd.Args(cmd, cmd.Flags().Args())
		}
		if f := cmd.Flags().Lookup("output"); f != nil {
			o := outputFlag{format: f.Value.String()}
			if err := o.validate(); err != nil && ExitCode(err) != ExitUsage {
				t.Fatalf("output format error %v is not a usage error", err)
			}
		}
	})
}
