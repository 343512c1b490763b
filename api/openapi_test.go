package api_test

import (
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

func TestOpenAPILoads(t *testing.T) {
	if _, err := openapi3.NewLoader().LoadFromFile("openapi.json"); err != nil {
		t.Fatal(err)
	}
}
