//! The importer on real documents: the Petstore (as YAML and as JSON), a 3.1 document with
//! every parameter style, and one broken document per kind of error.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{load, parse, text, Document, Error};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

fn document(name: &str) -> Document {
    match load(&fixture(name)) {
        Ok(doc) => doc,
        Err(errors) => panic!("{name}: {errors:#?}"),
    }
}

/// Each error as (pointer, line), and the messages.
fn errors(name: &str) -> (Vec<(String, Option<usize>)>, Vec<String>) {
    let errors = load(&fixture(name)).expect_err(name);
    for e in &errors {
        assert!(e.source.ends_with(name), "{e}");
    }
    (
        errors.iter().map(|e| (e.pointer.clone(), e.line)).collect(),
        errors.iter().map(|e| e.message.clone()).collect(),
    )
}

fn at(pointer: &str, line: usize) -> (String, Option<usize>) {
    (pointer.to_string(), Some(line))
}

fn portal_op<'a>(ops: &'a Value, id: &str) -> &'a Value {
    ops.as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == id)
        .unwrap_or_else(|| panic!("no operation {id}"))
}

fn param<'a>(op: &'a Value, name: &str, location: &str) -> &'a Value {
    op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name && p["in"] == location)
        .unwrap_or_else(|| panic!("no {location} parameter {name} in {}", op["id"]))
}

// -- The Petstore. ------------------------------------------------------------------------

#[test]
fn petstore_yaml_and_json_give_the_same_operations() {
    let yaml = document("examples/petstore-openapi.yaml");
    let json = document("tests/fixtures/openapi/petstore.json");
    let listed: Vec<(&str, &str, &str)> = yaml
        .operations
        .iter()
        .map(|o| (o.id.as_str(), o.method.as_str(), o.path.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("listPets", "GET", "/pets"),
            ("createPets", "POST", "/pets"),
            ("showPetById", "GET", "/pets/{petId}"),
            ("updatePet", "PUT", "/pets/{petId}"),
            ("deletePet", "DELETE", "/pets/{petId}"),
        ]
    );
    assert_eq!(yaml.operations, json.operations);
    assert_eq!(yaml.portal_operations(), json.portal_operations());
    for doc in [&yaml, &json] {
        assert_eq!(doc.title, "Swagger Petstore");
        assert_eq!(doc.version, "1.0.0");
        assert_eq!(doc.openapi, "3.0.3");
        assert_eq!(doc.servers, ["http://petstore.swagger.io/v1"]);
        assert_eq!(
            doc.description.as_deref(),
            Some("A sample API that uses a petstore as an example.")
        );
    }
    let list = &yaml.operations[0];
    assert_eq!(list.summary.as_deref(), Some("List all pets"));
    assert_eq!(list.tags, ["pets"]);
    assert!(!list.deprecated);
    assert_eq!(yaml.default_api_name(), "swagger-petstore");
}

#[test]
fn petstore_portal_operations_have_the_portal_shape() {
    let ops = document("examples/petstore-openapi.yaml").portal_operations();
    assert_eq!(ops.as_array().unwrap().len(), 5);
    for op in ops.as_array().unwrap() {
        let keys: Vec<&str> = op.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "id",
                "method",
                "path",
                "summary",
                "description",
                "tags",
                "deprecated",
                "parameters",
                "request_body",
                "responses"
            ]
        );
        for p in op["parameters"].as_array().unwrap() {
            let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                [
                    "name",
                    "in",
                    "required",
                    "description",
                    "style",
                    "explode",
                    "schema",
                    "example"
                ]
            );
        }
        for r in op["responses"].as_array().unwrap() {
            let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys, ["status", "description", "content"]);
        }
    }

    let show = portal_op(&ops, "showPetById");
    assert_eq!(show["method"], "GET");
    assert_eq!(show["path"], "/pets/{petId}");
    assert_eq!(show["summary"], "Info for a specific pet");
    assert_eq!(show["description"], Value::Null);
    assert_eq!(show["tags"], json!(["pets"]));
    assert_eq!(show["deprecated"], false);
    assert_eq!(show["request_body"], Value::Null);
    // The path item's $ref'd parameter, resolved.
    assert_eq!(
        show["parameters"],
        json!([{
            "name": "petId", "in": "path", "required": true,
            "description": "The id of the pet to retrieve", "style": "simple", "explode": false,
            "schema": {"type": "string"}, "example": "1"
        }])
    );
    let pet = json!({
        "type": "object",
        "required": ["id", "name"],
        "properties": {
            "id": {"type": "integer", "format": "int64", "example": 1},
            "name": {"type": "string", "example": "Rex"},
            "tag": {"type": "string", "example": "dog"}
        }
    });
    let statuses: Vec<&Value> = show["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(statuses, [&json!("200"), &json!("default")]);
    let ok = &show["responses"][0];
    assert_eq!(ok["description"], "Expected response to a valid request");
    assert_eq!(ok["content"]["application/json"]["schema"], pet);
    // No example in the media type: made up from the schema's property examples.
    assert_eq!(
        ok["content"]["application/json"]["example"],
        json!({"id": 1, "name": "Rex", "tag": "dog"})
    );
    // A $ref'd response, with its own example.
    let error = &show["responses"][1];
    assert_eq!(error["description"], "unexpected error");
    assert_eq!(
        error["content"]["application/json"],
        json!({
            "schema": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "integer", "format": "int32"},
                    "message": {"type": "string"}
                }
            },
            "example": {"code": 404, "message": "no pet with that id"}
        })
    );

    let list = portal_op(&ops, "listPets");
    let limit = param(list, "limit", "query");
    assert_eq!(limit["required"], false);
    assert_eq!(limit["style"], "form");
    assert_eq!(limit["explode"], true);
    assert_eq!(limit["example"], 20);
    let pets = &list["responses"][0]["content"]["application/json"];
    assert_eq!(pets["schema"]["type"], "array");
    assert_eq!(pets["schema"]["items"], pet);
    assert_eq!(pets["example"][1]["name"], "Tom");

    let create = portal_op(&ops, "createPets");
    assert_eq!(create["method"], "POST");
    assert_eq!(
        create["request_body"],
        json!({
            "required": true,
            "description": "The pet to add",
            "content": {"application/json": {
                "schema": pet,
                "example": {"id": 3, "name": "Fido", "tag": "dog"}
            }}
        })
    );
    assert_eq!(create["responses"][0]["content"], json!({}));

    let update = portal_op(&ops, "updatePet");
    assert_eq!(update["method"], "PUT");
    assert_eq!(
        update["request_body"]["content"]["application/json"]["example"]["tag"],
        "good dog"
    );
    assert_eq!(update["request_body"]["description"], Value::Null);
    let delete = portal_op(&ops, "deletePet");
    assert_eq!(delete["method"], "DELETE");
    assert_eq!(delete["responses"][0]["status"], "204");
    assert_eq!(param(delete, "petId", "path")["example"], "1");
}

// -- Parameter styles (OpenAPI 3.1). ------------------------------------------------------

const STYLES: &str = "tests/fixtures/openapi/parameter-styles.yaml";

#[test]
fn parameter_styles_document() {
    let doc = document(STYLES);
    assert_eq!(doc.openapi, "3.1.0");
    assert_eq!(doc.version, "2.1");
    assert_eq!(doc.servers, ["https://eu.api.example.com:8443/styles/"]);
    let listed: Vec<(&str, &str, &str)> = doc
        .operations
        .iter()
        .map(|o| (o.id.as_str(), o.method.as_str(), o.path.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("getItem", "GET", "/items/{id}"),
            (
                "pathStyles",
                "GET",
                "/matrix/{m1}/{m2}/label/{l1}/{l2}/simple/{s1}/{s2}"
            ),
            ("get-nodes-id", "GET", "/nodes/{id}"),
            ("patchNode", "PATCH", "/nodes/{id}"),
        ]
    );
    // The path item's summary stands in for an operation's.
    assert_eq!(doc.operations[0].summary.as_deref(), Some("One item"));
    assert!(doc.operations[2].deprecated);
    for op in &doc.operations {
        crate::route::Template::parse(&op.path).unwrap();
    }
}

#[test]
fn every_style_gets_its_default_explode() {
    let ops = document(STYLES).portal_operations();
    let cases = [
        ("getItem", "fields", "query", "form", true),
        ("getItem", "ids", "query", "form", false),
        ("getItem", "tags", "query", "spaceDelimited", false),
        ("getItem", "sizes", "query", "pipeDelimited", false),
        ("getItem", "filter", "query", "deepObject", true),
        ("getItem", "X-Trace", "header", "simple", true),
        ("getItem", "X-Request-Id", "header", "simple", false),
        ("getItem", "session", "cookie", "form", true),
        ("getItem", "where", "query", "form", true),
        ("getItem", "limit", "query", "form", true),
        ("getItem", "id", "path", "simple", false),
        ("pathStyles", "m1", "path", "matrix", true),
        ("pathStyles", "m2", "path", "matrix", false),
        ("pathStyles", "l1", "path", "label", true),
        ("pathStyles", "l2", "path", "label", false),
        ("pathStyles", "s1", "path", "simple", true),
        ("pathStyles", "s2", "path", "simple", false),
    ];
    for (op, name, location, style, explode) in cases {
        let p = param(portal_op(&ops, op), name, location);
        assert_eq!(p["style"], style, "{op} {name}");
        assert_eq!(p["explode"], explode, "{op} {name}");
        // The operation's X-Request-Id (required) replaced the path item's.
        let required = location == "path" || name == "X-Request-Id";
        assert_eq!(p["required"], required, "{op} {name}");
    }
}

#[test]
fn parameters_are_resolved_merged_and_given_examples() {
    let ops = document(STYLES).portal_operations();
    let item = portal_op(&ops, "getItem");
    let names: Vec<&str> = item["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    // Path-item parameters first; the operation's X-Request-Id replaces the path item's.
    assert_eq!(
        names,
        [
            "id",
            "X-Request-Id",
            "fields",
            "ids",
            "tags",
            "sizes",
            "filter",
            "X-Trace",
            "session",
            "where",
            "limit"
        ]
    );
    let id = param(item, "id", "path");
    assert_eq!(id["description"], "The item's id");
    assert_eq!(id["schema"], json!({"type": "integer", "minimum": 1}));
    assert_eq!(id["example"], 1);
    let request_id = param(item, "X-Request-Id", "header");
    assert_eq!(request_id["description"], "overridden by the operation");
    assert_eq!(request_id["required"], true);
    assert_eq!(request_id["example"], "string");
    assert_eq!(param(item, "fields", "query")["example"], json!(["name"]));
    assert_eq!(param(item, "ids", "query")["example"], json!([0]));
    assert_eq!(
        param(item, "filter", "query")["example"],
        json!({"color": "string", "min": 1.5})
    );
    // The first of `examples`.
    assert_eq!(param(item, "session", "cookie")["example"], "abc123");
    // `content` instead of `schema`: the media type's schema and example.
    let place = param(item, "where", "query");
    assert_eq!(
        place["schema"]["properties"]["lat"],
        json!({"type": "number"})
    );
    assert_eq!(place["example"], json!({"lat": 52.5, "long": 13.4}));
    // A $ref to a $ref, and the schema's default as the example.
    let limit = param(item, "limit", "query");
    assert_eq!(limit["schema"], json!({"type": "integer", "default": 25}));
    assert_eq!(limit["example"], 25);
    assert_eq!(item["description"], "Every query, header and cookie style.");
    let styles = portal_op(&ops, "pathStyles");
    assert_eq!(param(styles, "m1", "path")["example"], json!({"x": 0}));
    assert_eq!(param(styles, "s2", "path")["example"], "2024-01-01");
}

#[test]
fn recursive_schemas_are_cut_where_they_recur() {
    let ops = document(STYLES).portal_operations();
    let node = portal_op(&ops, "get-nodes-id");
    assert_eq!(node["deprecated"], true);
    assert_eq!(node["summary"], "A node and its children");
    let body = &node["responses"][0]["content"]["application/json"];
    assert_eq!(body["schema"]["type"], "object");
    assert_eq!(
        body["schema"]["properties"]["children"]["items"],
        json!({"$ref": "#/components/schemas/Node", "x-circular": true})
    );
    assert_eq!(
        body["example"],
        json!({"id": "string", "name": "string", "children": []})
    );
    // A $ref'd request body; its example leaves the read-only id out.
    let patch = portal_op(&ops, "patchNode");
    let request = &patch["request_body"];
    assert_eq!(request["required"], true);
    let media = &request["content"]["application/merge-patch+json"];
    assert_eq!(
        media["schema"]["properties"]["children"]["items"]["x-circular"],
        true
    );
    assert_eq!(media["example"], json!({"name": "string", "children": []}));
    let problem = &patch["responses"][0];
    assert_eq!(problem["status"], "default");
    assert_eq!(
        problem["content"]["application/problem+json"]["example"],
        json!({"title": "string", "status": 400})
    );
}

// -- Invalid documents. -------------------------------------------------------------------

#[test]
fn swagger_2_is_refused_by_name() {
    let (places, messages) = errors("tests/fixtures/openapi/invalid/swagger2.yaml");
    assert_eq!(places, [at("/swagger", 2)]);
    assert!(messages[0].contains("`swagger: 2.0`"), "{}", messages[0]);
    assert!(
        messages[0].contains("OpenAPI 3.0 and 3.1"),
        "{}",
        messages[0]
    );
}

#[test]
fn duplicate_operation_ids_are_refused() {
    let (places, messages) = errors("tests/fixtures/openapi/invalid/duplicate-operation-id.yaml");
    assert_eq!(places, [at("/paths/~1pets~1{petId}/get/operationId", 14)]);
    assert!(
        messages[0].contains("\"listPets\" is already used by GET /pets"),
        "{}",
        messages[0]
    );
}

#[test]
fn path_parameters_match_the_template() {
    let (places, messages) = errors("tests/fixtures/openapi/invalid/undeclared-path-param.yaml");
    assert_eq!(
        places,
        [
            at("/paths/~1pets~1{petId}/get", 7),
            at("/paths/~1owners/get/parameters/0", 16)
        ]
    );
    assert!(messages[0].contains("{petId}"), "{}", messages[0]);
    assert!(
        messages[0].contains("in: path, required: true"),
        "{}",
        messages[0]
    );
    assert!(messages[1].contains("\"ownerId\" is not in the path template"));
}

#[test]
fn styles_locations_and_schemas_are_checked_in_json() {
    let (places, messages) = errors("tests/fixtures/openapi/invalid/bad-style.json");
    let p = "/paths/~1pets~1{petId}/get/parameters";
    assert_eq!(
        places,
        [
            at(&format!("{p}/0/style"), 13),
            at(&format!("{p}/1/style"), 16),
            at(&format!("{p}/2/style"), 17),
            at(&format!("{p}/3/in"), 18),
            at(&format!("{p}/4/content"), 23),
        ]
    );
    assert_eq!(
        messages[0],
        "style \"form\" is not valid for a path parameter: expected simple, matrix, label"
    );
    assert!(messages[1].contains("query parameter: expected form, spaceDelimited"));
    assert!(messages[2].contains("header parameter: expected simple"));
    assert!(messages[3].contains("requestBody"), "{}", messages[3]);
    assert!(messages[4].contains("not both"));
}

#[test]
fn dangling_and_external_refs_are_reported_where_written() {
    let (places, messages) = errors("tests/fixtures/openapi/invalid/dangling-ref.yaml");
    assert_eq!(
        places,
        [
            at("/paths/~1pets/get/parameters/0/$ref", 10),
            at(
                "/paths/~1pets/get/responses/200/content/application~1json/schema/$ref",
                17
            ),
            at("/paths/~1pets/post/requestBody/$ref", 21),
        ]
    );
    assert!(
        messages[0].contains("nothing named \"parameters\" at #/components (known: schemas)"),
        "{}",
        messages[0]
    );
    assert!(
        messages[1].contains("nothing named \"Pett\" at #/components/schemas (known: Pet)"),
        "{}",
        messages[1]
    );
    assert!(messages[2].starts_with("external $ref"), "{}", messages[2]);
}

#[test]
fn partial_segment_templates_suggest_a_whole_segment() {
    let (places, messages) = errors("tests/fixtures/openapi/invalid/partial-segment.yaml");
    assert_eq!(places, [at("/paths/~1files~1{name}.json", 6)]);
    assert!(
        messages[0].contains("write \"/files/{name}\""),
        "{}",
        messages[0]
    );
}

#[test]
fn errors_print_file_line_and_pointer() {
    let errors = parse("openapi: 3.0.3\ninfo:\n  title: t\npaths: {}\n", "api.yaml").unwrap_err();
    assert_eq!(
        errors.iter().map(Error::to_string).collect::<Vec<_>>(),
        ["api.yaml: line 2: at /info/version: info.version is missing"]
    );
    let syntax = parse("openapi: 3.0.3\ninfo:\n  title: [t\n", "api.yaml").unwrap_err();
    assert_eq!(syntax.len(), 1);
    assert_eq!(syntax[0].pointer, "");
    assert!(syntax[0].line.is_some());
    assert!(
        syntax[0].to_string().starts_with("api.yaml: line "),
        "{}",
        syntax[0]
    );
    let json = parse(
        "{\n  \"openapi\": \"3.0.3\",\n  \"info\": {,\n}",
        "api.json",
    )
    .unwrap_err();
    assert_eq!(json[0].line, Some(3), "{}", json[0]);
    assert!(
        json[0].message.starts_with("JSON syntax error"),
        "{}",
        json[0]
    );
    let missing = load(Path::new("/nonexistent/openapi.yaml")).unwrap_err();
    assert!(missing[0]
        .to_string()
        .starts_with("/nonexistent/openapi.yaml: cannot read"));
}

#[test]
fn every_error_of_a_document_is_reported() {
    let text = "\
openapi: 3.0
info:
  title: t
  version: 1
paths:
  pets:
    get: {}
  /a/{x}:
    GET: {}
    get:
      parameters:
        - {name: x, in: path, schema: {type: string}}
";
    let errors = parse(text, "many.yaml").unwrap_err();
    let places: Vec<(&str, Option<usize>)> = errors
        .iter()
        .map(|e| (e.pointer.as_str(), e.line))
        .collect();
    assert_eq!(
        places,
        [
            ("/openapi", Some(1)),
            ("/paths/pets", Some(6)),
            ("/paths/~1a~1{x}/GET", Some(9)),
            ("/paths/~1a~1{x}/get/parameters/0/required", Some(12)),
        ]
    );
    assert!(errors[0].message.contains("quote it"));
    assert!(errors[2].message.contains("write \"get\""));
}

#[test]
fn version_and_paths_rules() {
    let ok = |text: &str| parse(text, "t.yaml").map(|d| d.operations.len());
    let info = "info: {title: t, version: v}\n";
    assert_eq!(
        ok(&format!("openapi: 3.1.0\n{info}components: {{}}\n")),
        Ok(0)
    );
    assert_eq!(
        ok(&format!("openapi: 3.1.1\n{info}webhooks: {{}}\n")),
        Ok(0)
    );
    let missing = ok(&format!("openapi: 3.0.3\n{info}components: {{}}\n")).unwrap_err();
    assert_eq!(missing[0].pointer, "/paths");
    let future = ok(&format!("openapi: 3.2.0\n{info}paths: {{}}\n")).unwrap_err();
    assert!(future[0].message.contains("3.0.x and 3.1.x"));
    let no_version = ok(&format!("{info}paths: {{}}\n")).unwrap_err();
    assert_eq!(no_version[0].pointer, "/openapi");
    let not_map = parse("- openapi\n", "t.yaml").unwrap_err();
    assert!(not_map[0].message.contains("not a list"));
    let empty = parse("# nothing\n", "t.yaml").unwrap_err();
    assert!(empty[0].message.contains("empty"));
}

#[test]
fn ids_are_valid_and_unique() {
    let text = r#"
openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /:
    get: {responses: {}}
  /users/{user_id}/orders:
    parameters: [{name: user_id, in: path, required: true, schema: {type: string}}]
    get: {responses: {}}
    post: {operationId: "create order!", responses: {}}
  /users-{x}:
    get: {operationId: get-users-user_id-orders, responses: {}}
"#;
    // The last path is refused (a partial segment) ...
    let errors = parse(text, "t.yaml").unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].pointer, "/paths/~1users-{x}");
    // ... and without it the generated ids stay clear of the written ones.
    let text = text.replace("/users-{x}:", "/users-x:");
    let doc = parse(&text, "t.yaml").unwrap();
    let ids: Vec<&str> = doc.operations.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "get-root",
            "get-users-user_id-orders-2",
            "create-order",
            "get-users-user_id-orders"
        ]
    );
}

#[test]
fn server_variables_need_defaults() {
    let text = "openapi: 3.0.3\ninfo: {title: t, version: '1'}\nservers:\n  - url: http://{host}:{port}/v1\n    variables:\n      host: {default: api.local}\npaths: {}\n";
    let errors = parse(text, "t.yaml").unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].pointer, "/servers/0/url");
    assert_eq!(errors[0].line, Some(4));
    assert!(errors[0].message.contains("{port}"));
}

#[test]
fn circular_reference_chains_are_refused() {
    let text = "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths: {}\ncomponents:\n  schemas:\n    A: {$ref: '#/components/schemas/B'}\n    B: {$ref: '#/components/schemas/A'}\n";
    let errors = parse(text, "t.yaml").unwrap_err();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].pointer, "/components/schemas/A/$ref");
    assert_eq!(errors[0].line, Some(6));
    assert!(errors[0].message.contains("circular"));
}

// -- Lines. -------------------------------------------------------------------------------

#[test]
fn lines_are_found_in_yaml() {
    let yaml = "\
%YAML 1.2
---
# a comment
openapi: 3.1.0
paths:
  '/pets/{petId}':
    get:
      tags:
      - pets
      - 'dogs'
      parameters:
        - name: a   # a comment
          in: path

        -
          name: b
          in: &where query
        - {name: c, 'in': \"he\\\"ader\"}
      responses: {\"200\": {description: ok}}
  /other: {}
";
    let cases = [
        ("/openapi", Some(4)),
        ("/paths", Some(5)),
        ("/paths/~1pets~1{petId}", Some(6)),
        ("/paths/~1pets~1{petId}/get/tags/1", Some(10)),
        ("/paths/~1pets~1{petId}/get/parameters/0/in", Some(13)),
        ("/paths/~1pets~1{petId}/get/parameters/1", Some(15)),
        ("/paths/~1pets~1{petId}/get/parameters/1/in", Some(17)),
        ("/paths/~1pets~1{petId}/get/parameters/2/in", Some(18)),
        (
            "/paths/~1pets~1{petId}/get/responses/200/description",
            Some(19),
        ),
        ("/paths/~1other", Some(20)),
        // Missing keys: the deepest one found.
        ("/paths/~1pets~1{petId}/get/parameters/7", Some(11)),
        ("/paths/~1pets~1{petId}/post", Some(6)),
        ("/info", None),
    ];
    for (pointer, line) in cases {
        assert_eq!(text::line_of(yaml, pointer), line, "{pointer}");
    }
}

#[test]
fn lines_are_found_in_json() {
    let json = "{\n  \"openapi\": \"3.1.0\",\n  \"paths\": {\"/a\": {\"get\": {\"x\": [1, {\"y\": \"}\"}, [2,\n 3], {\"z\": 4}]}},\n    \"/b~c\": {\n\t\"get\": {}\n    }\n  }\n}\n";
    let cases = [
        ("/openapi", Some(2)),
        ("/paths/~1a/get/x/1/y", Some(3)),
        ("/paths/~1a/get/x/3/z", Some(4)),
        ("/paths/~1b~0c/get", Some(6)),
        ("/paths/~1b~0c/put", Some(5)),
    ];
    for (pointer, line) in cases {
        assert_eq!(text::line_of(json, pointer), line, "{pointer}");
    }
}

/// Every key of the fixtures is found on a line that holds it.
#[test]
fn every_key_of_the_fixtures_has_its_line() {
    fn keys(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    let pointer = super::refs::join(at, key);
                    out.push((pointer.clone(), key.clone()));
                    keys(v, &pointer, out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    keys(v, &format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    for name in [
        "examples/petstore-openapi.yaml",
        "tests/fixtures/openapi/petstore.json",
        STYLES,
    ] {
        let source = std::fs::read_to_string(fixture(name)).unwrap();
        let mut found = Vec::new();
        keys(&text::parse_value(&source).unwrap(), "", &mut found);
        let lines: Vec<&str> = source.lines().collect();
        for (pointer, key) in found {
            let line = text::line_of(&source, &pointer)
                .unwrap_or_else(|| panic!("{name}: no line for {pointer}"));
            assert!(
                lines[line - 1].contains(&key),
                "{name}: {pointer} is not on line {line}: {:?}",
                lines[line - 1]
            );
        }
    }
}

// -- The configuration fragment. ----------------------------------------------------------

const LISTENER: &str = "listeners:\n  - address: 127.0.0.1:18080\n";

fn load_fragment(fragment: &str) -> crate::config::Config {
    let text = format!("{fragment}{LISTENER}");
    match crate::config::load_str(&text, "fragment.yaml", &|_| None) {
        Ok(config) => config,
        Err(e) => panic!("{e}\n--- fragment:\n{text}"),
    }
}

#[test]
fn the_config_fragment_loads_as_ringway_configuration() {
    let doc = document("examples/petstore-openapi.yaml");
    let fragment = doc.to_config_yaml("petstore", "/petstore", Some("http://127.0.0.1:9000/api/"));
    let config = load_fragment(&fragment);
    assert_eq!(config.apis.len(), 1);
    let api = &config.apis[0];
    assert_eq!(api.name, "petstore");
    assert_eq!(api.path, "/petstore");
    assert_eq!(api.backend.as_deref(), Some("petstore"));
    assert_eq!(api.backend_path, "/api");
    let ids: Vec<&str> = api.operations.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "listPets",
            "createPets",
            "showPetById",
            "updatePet",
            "deletePet"
        ]
    );
    assert!(api.operations[2].template.matches(b"/petstore/pets/42"));
    assert_eq!(config.backends.len(), 1);
    assert!(fragment.contains("      # Info for a specific pet\n      - id: showPetById\n"));

    // A --backend without a scheme is a host and port.
    let fragment = doc.to_config_yaml("petstore", "/petstore", Some("127.0.0.1:9000"));
    assert!(fragment.contains("- url: http://127.0.0.1:9000    # from --backend"));
    assert_eq!(load_fragment(&fragment).apis[0].backend_path, "");

    // Every operation of the styles document, under the root path.
    let doc = document(STYLES);
    let fragment = doc.to_config_yaml("styles", "/", Some("http://localhost:8081"));
    let config = load_fragment(&fragment);
    assert_eq!(config.apis[0].operations.len(), 4);
    assert!(fragment.contains("url_template: /matrix/{m1}/{m2}/label/{l1}/{l2}/simple/{s1}/{s2}\n"));
    assert!(fragment.contains("# A node and its children (deprecated)\n"));
}

#[test]
fn the_fragment_takes_its_backend_from_the_first_server() {
    let doc = document("examples/petstore-openapi.yaml");
    let fragment = doc.to_config_yaml("petstore", "/petstore", None);
    assert!(
        fragment.contains("      - url: http://petstore.swagger.io    # from servers[0]"),
        "{fragment}"
    );
    assert!(
        fragment.contains("    backend_path: /v1    #"),
        "{fragment}"
    );
    assert!(!fragment.contains("TODO"));
    // Loading it would resolve petstore.swagger.io: check the same text against a local
    // target instead.
    let local = fragment.replace("http://petstore.swagger.io", "http://127.0.0.1:9000");
    assert_eq!(load_fragment(&local).apis[0].backend_path, "/v1");

    let styles = document(STYLES).to_config_yaml("styles", "/styles", None);
    assert!(styles.contains("- url: https://eu.api.example.com:8443    #"));
    assert!(styles.contains("backend_path: /styles    #"));
}

#[test]
fn without_a_server_the_fragment_has_a_placeholder() {
    let text = "openapi: 3.0.3\ninfo: {title: 'Costs ${PRICE}', version: '1'}\npaths:\n  /x:\n    get:\n      summary: \"Pays ${AMOUNT}\\nnow\"\n      responses: {}\n";
    let doc = parse(text, "costs.yaml").unwrap();
    let fragment = doc.to_config_yaml("costs", "/costs", None);
    assert!(fragment.contains("# TODO"), "{fragment}");
    assert!(
        fragment.contains("- url: http://127.0.0.1:8000\n"),
        "{fragment}"
    );
    // `${` is escaped, so environment substitution leaves the words alone.
    assert!(fragment.contains("# Pays $${AMOUNT} now\n"), "{fragment}");
    let config = load_fragment(&fragment);
    assert_eq!(config.apis[0].operations[0].id, "get-x");
    assert_eq!(config.apis[0].backend_path, "");

    // A relative server: its path, and the placeholder.
    let relative = text.replace("paths:", "servers: [{url: /api/v2}]\npaths:");
    let fragment = parse(&relative, "costs.yaml")
        .unwrap()
        .to_config_yaml("costs", "/costs", None);
    assert!(
        fragment.contains("# TODO: servers[0] (/api/v2) names no host"),
        "{fragment}"
    );
    assert_eq!(load_fragment(&fragment).apis[0].backend_path, "/api/v2");

    // No operations at all: the API takes every request under its path.
    let empty = parse(
        "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths: {}\n",
        "e.yaml",
    )
    .unwrap()
    .to_config_yaml("empty", "/empty", Some("http://127.0.0.1:9000"));
    assert!(load_fragment(&empty).apis[0].operations.is_empty());
}
