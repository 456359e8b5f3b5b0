// A page without a build step: the script tag's global SvcInfra, with the types the
// Python package ships beside it (generated from index.d.ts).
/// <reference path="../../../svc_infra/websocket/static/svc_infra/websocket.d.ts" />

const page: SvcInfra.Connection = SvcInfra.connect("/ws/dashboard/", {
  recover: false,
  onStatus: (status: SvcInfra.Status) => console.log(status),
  onError: (error: SvcInfra.SvcInfraError) => console.log(error.kind, error.message),
});
page.send("ping");
const replaced: 4409 = SvcInfra.CloseCode.REPLACED;
console.log(replaced, SvcInfra.SUBPROTOCOL);

export {};
