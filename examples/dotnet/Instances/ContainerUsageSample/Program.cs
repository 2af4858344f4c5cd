// SPDX-License-Identifier: MIT
// Instances (scenario S5): Deploy starts two instances of `container-sample`, learns each one's
// ID, routes 127 calls between them and checks that every reply came from the instance it was
// sent to, then destroys both (their Stop runs; a per-instance scaler stops their processes).
using Perper;
using Perper.Application;
using Perper.Extensions;
using Perper.Model;

return await new PerperBuilder("container-usage-sample").AddHandlers<ContainerUsageSample>().StopAfterDeploy().RunAsync();

public class ContainerUsageSample
{
    public static async Task<int> Deploy()
    {
        var instances = new PerperInstance[2];
        var ids = new string[2];
        for (int n = 0; n < 2; n++)
        {
            Console.WriteLine($"Starting container-sample #{n + 1}");
            instances[n] = await Context.StartAgentAsync("container-sample");
            ids[n] = await instances[n].CallAsync<string>("Test");
            Console.WriteLine($"Started container-sample #{n + 1}");
        }
        if (ids[0] == ids[1])
        {
            Console.WriteLine($"Both instances answered with the same ID {ids[0]}");
            return 1;
        }
        for (int i = 0; i < 127; i++)
        {
            int n = ((i ^ (i << 2)) & 8) != 0 ? 1 : 0;
            string id = await instances[n].CallAsync<string>("Test");
            if (id != ids[n])
            {
                Console.WriteLine($"Call {i} to #{n + 1} was answered by {id}, expected {ids[n]}");
                return 1;
            }
        }
        Console.WriteLine("Test passed!");
        foreach (PerperInstance instance in instances)
        {
            await instance.DestroyAsync();
        }
        Console.WriteLine("Both agents destroyed!");
        return 0;
    }
}
