// SPDX-License-Identifier: MIT
// The agent `container-sample` (scenario S5): each instance picks a random ID in its Start and
// answers Test with it, so a caller can tell which instance served a call. Run one process per
// instance (the scaler's instance mode sets X_PERPER_INSTANCE) or one for all of them.
using Perper;
using Perper.Application;
using Perper.Extensions;

return await new PerperBuilder("container-sample").AddHandlers<ContainerSample>().RunAsync();

public class ContainerSample
{
    // The constructor of an instance: its ID lives in the instance's state.
    public static Task Start() => Context.State.SetAsync("id", Guid.NewGuid().ToString("N"));

    public static async Task<string> Test() =>
        await Context.State.GetOrDefaultAsync<string?>("id") ?? throw new InvalidOperationException("Test called before Start");

    // The destructor: forget the ID.
    public static Task Stop() => Context.State.RemoveAsync("id");
}
